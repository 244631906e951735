"""A hostile table over the bundle, `vitinspect export`, the review and validate: every case exits non-zero
with one line naming the file or key (no traceback), and leaves every file the user had byte-identical.

The bundle cases tamper with a copy of the bundle the shared fixture builds (tests/test_inspect.py
`tiny_bundle`). "rehashed" cases also rewrite manifest.json, as someone who regenerates the hashes
would: the schema, vit/config.json and the check parts must still refuse them.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import load_stage, tiny_dict
from conftest import with_value

from vitinspect.deploy import bundle as bundle_format
from vitinspect.review import pr_report as review
from vitinspect.app.command import main as cli_main
from vitinspect.core.runtime import run_stage

# --------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err and "a bug" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def edit_json(path: Path, change) -> None:
    m = json.loads(path.read_text())
    m = change(m)
    path.write_text(json.dumps(m))  # NaN and Infinity as Python's json writes them


def rehash(d: Path) -> None:
    bundle_format.write_hashes(d, d / bundle_format.HASHES)


def edit_npz(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, f in changes.items():
        arrays[k] = f(arrays[k])
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def set_key(keys: str, value):
    def change(m):
        *parents, leaf = keys.split(".")
        node = m
        for k in parents:
            node = node[k]
        node[leaf] = value
        return m

    return change


@pytest.fixture(scope="module")
def networks(tiny_bundle, tmp_path_factory):  # noqa: F811
    """ONNX graphs a hostile user swaps in: always 'passed', other input names, 3 and 5 classes."""
    import torch

    d = tmp_path_factory.mktemp("networks")
    with np.load(tiny_bundle / bundle_format.FEATURES) as z:
        dim = z["means"].shape[1]

    class Constant(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, images):
            n = images.shape[0]
            proba = torch.nn.functional.one_hot(torch.zeros(n, dtype=torch.long), self.k).float() + 0 * images.mean()
            return proba, torch.zeros(n, dim) + 0 * images.mean()

    import warnings

    out = {}
    for name, k, inputs in (("always_passed", 4, ["images"]), ("three", 3, ["images"]), ("five", 5, ["images"]),
                            ("other_input", 4, ["pixels"])):
        out[name] = d / f"{name}.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
            warnings.simplefilter("ignore")
            torch.onnx.export(Constant(k), (torch.zeros(2, 32, 32, 3),), str(out[name]), input_names=inputs,
                              output_names=["proba", "features"], dynamic_axes={inputs[0]: {0: "batch"}}, opset_version=17,
                              dynamo=False)
    return out


@pytest.fixture(scope="module")
def part(tiny_bundle, tmp_path_factory):  # noqa: F811
    """One rendered part folder to inspect."""
    lot = tmp_path_factory.mktemp("lot") / "lot"
    assert cli_main(["render", "--n", "1", "--out", str(lot), "--bundle", str(tiny_bundle)]) == 0
    return next(p for p in lot.iterdir() if p.is_dir())


def swap_onnx(which):
    def tamper(d: Path, networks):
        shutil.copy(networks[which], d / bundle_format.ONNX)

    return tamper


def json_case(keys, value):
    return lambda d, _: edit_json(d / "bundle.json", set_key(keys, value))


def config_classes(names):
    def tamper(d: Path, _):
        cfg = json.loads((d / "vit/config.json").read_text())
        cfg["id2label"] = {str(i): n for i, n in enumerate(names)}
        cfg["label2id"] = {n: i for i, n in enumerate(names)}
        (d / "vit/config.json").write_text(json.dumps(cfg))

    return tamper


def flip_byte(rel, at=0.5):
    def tamper(d: Path, _):
        data = bytearray((d / rel).read_bytes())
        data[int(len(data) * at)] ^= 0x01
        (d / rel).write_bytes(bytes(data))

    return tamper


def remove(rel):
    def tamper(d: Path, _):
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return tamper


def write(rel, text):
    return lambda d, _: (d / rel).write_text(text)


def npz_case(rel, **changes):
    return lambda d, _: edit_npz(d / rel, **changes)


def nan_at(i):
    def change(a):
        a = a.astype(np.float64).copy()
        a.flat[i] = np.nan
        return a

    return change


# (id, tamper(bundle_dir, networks), rehash, engine, fragments the one line must hold)
BUNDLE_CASES = [
    ("swapped_onnx_always_passed", swap_onnx("always_passed"), False, "onnx", ["model.onnx", "SHA-256"]),
    ("swapped_onnx_always_passed_rehashed", swap_onnx("always_passed"), True, "onnx", ["model.onnx", "check parts"]),
    ("swapped_onnx_rehashed_engine_torch", swap_onnx("always_passed"), True, "torch", ["model.onnx", "check parts"]),
    ("onnx_other_input_names", swap_onnx("other_input"), True, "onnx", ["model.onnx", "'pixels'"]),
    ("onnx_three_classes", swap_onnx("three"), True, "onnx", ["model.onnx", "4 classes"]),
    ("onnx_five_classes", swap_onnx("five"), True, "onnx", ["model.onnx", "4 classes"]),
    ("onnx_garbage_rehashed", write("model.onnx", "garbage"), True, "onnx", ["model.onnx", "onnxruntime cannot load"]),
    ("threshold_minus_1", json_case("operating_point.threshold", -1), False, "onnx", ["bundle.json", "operating_point.threshold"]),
    ("threshold_2", json_case("operating_point.threshold", 2.0), False, "onnx", ["bundle.json", "operating_point.threshold"]),
    ("threshold_string", json_case("operating_point.threshold", "0.5"), False, "onnx", ["operating_point.threshold must be a finite number"]),
    ("op_class_unknown", json_case("operating_point.class", "bent"), False, "onnx", ["operating_point.class"]),
    ("ood_threshold_nan", json_case("ood.threshold", math.nan), False, "onnx", ["bundle.json", "ood.threshold must be a finite"]),
    ("ood_threshold_inf", json_case("ood.threshold", math.inf), False, "onnx", ["bundle.json", "ood.threshold must be a finite"]),
    ("ood_threshold_minus_inf", json_case("ood.threshold", -math.inf), False, "onnx", ["ood.threshold"]),
    ("ood_centre_nan", json_case("ood.centre.pixel", math.nan), False, "onnx", ["ood.centre.pixel"]),
    ("ood_scale_zero", json_case("ood.scale.feature", 0), False, "onnx", ["ood.scale.feature"]),
    ("ood_component_missing", json_case("ood.scale", {"pixel": 1.0}), False, "onnx", ["ood.scale.pattern"]),
    ("ood_flagged_over_n", json_case("ood.n_val_flagged", 10 ** 9), False, "onnx", ["ood.n_val_flagged"]),
    ("class_means_nan", npz_case("features.npz", means=nan_at(0)), False, "onnx", ["features.npz", "means must be finite"]),
    ("class_means_inf", npz_case("features.npz", means=lambda a: a * np.inf), False, "onnx", ["features.npz", "means"]),
    ("precision_nan", npz_case("features.npz", precision=nan_at(3)), False, "onnx", ["features.npz", "precision"]),
    ("unit_mean_nan", npz_case("unit_space.npz", mean=nan_at(5)), False, "onnx", ["unit_space.npz", "mean must be finite"]),
    ("unit_std_negative", npz_case("unit_space.npz", std=lambda a: -a - 1), False, "onnx", ["unit_space.npz", "std must be >= 0"]),
    ("unit_wrong_shape", npz_case("unit_space.npz", mean=lambda a: a[:, :8]), False, "onnx", ["unit_space.npz", "mean must have shape"]),
    ("check_parts_edited_rehashed", npz_case("check_parts.npz", proba=lambda a: a[:, ::-1]), True, "onnx", ["model.onnx", "check parts"]),
    ("check_parts_nan", npz_case("check_parts.npz", ood_score=nan_at(0)), False, "onnx", ["check_parts.npz", "ood_score"]),
    ("classes_reordered", json_case("classes", ["tilt_x", "passed", "tilt_y", "retracted"]), False, "onnx", ["vit/config.json", "id2label"]),
    ("classes_three", json_case("classes", ["passed", "tilt_x", "tilt_y"]), False, "onnx", ["features.npz", "means"]),
    ("config_three_classes_rehashed", config_classes(["passed", "tilt_x", "tilt_y"]), True, "onnx", ["vit/config.json", "id2label"]),
    ("config_five_classes_rehashed", config_classes(["passed", "tilt_x", "tilt_y", "retracted", "bent"]), True, "torch",
     ["vit/config.json", "id2label"]),
    ("input_unknown", json_case("input", "depth"), False, "onnx", ["bundle.json", "input must be one of"]),
    ("rt_gain_negative", json_case("nsoartc.gain", -24.0), False, "onnx", ["bundle.json", "nsoartc.gain"]),
    ("rt_gain_zero", json_case("nsoartc.gain", 0), False, "onnx", ["nsoartc.gain"]),
    ("rt_window_even", json_case("nsoartc.window", 4), False, "onnx", ["nsoartc.window must be odd"]),
    ("rt_eps_nan", json_case("nsoartc.eps", math.nan), False, "onnx", ["nsoartc.eps"]),
    ("views_unknown", json_case("views", ["center", "left", "sideways"]), False, "onnx", ["views has unknown value 'sideways'"]),
    ("views_no_pair", json_case("views", ["center", "left"]), False, "onnx", ["views must hold 'center'"]),
    ("image_size_string", json_case("image_size", "32"), False, "onnx", ["image_size must be an integer"]),
    ("image_size_huge", json_case("image_size", 10 ** 12), False, "onnx", ["image_size must be in"]),
    ("format_old", json_case("format", 1), False, "onnx", ["bundle.json", "format"]),
    ("bundle_json_list", write("bundle.json", "[1, 2, 3]"), False, "onnx", ["bundle.json", "must be a JSON object"]),
    ("bundle_json_truncated", lambda d, _: (d / "bundle.json").write_bytes((d / "bundle.json").read_bytes()[:200]), False, "onnx",
     ["bundle.json", "not valid JSON"]),
    ("bundle_json_not_utf8", lambda d, _: (d / "bundle.json").write_bytes(b"\xff\xfe{}"), False, "onnx", ["bundle.json", "not UTF-8"]),
    ("bundle_json_edited_in_range", json_case("operating_point.threshold", 0.5), False, "onnx", ["bundle.json", "SHA-256"]),
    ("safetensors_byte_flipped", flip_byte("vit/model.safetensors"), False, "onnx", ["vit/model.safetensors", "SHA-256"]),
    ("onnx_byte_flipped", flip_byte("model.onnx", 0.9), False, "torch", ["model.onnx", "SHA-256"]),
    ("preprocessor_edited", flip_byte("vit/preprocessor_config.json", 0.0), False, "onnx", ["preprocessor_config.json", "SHA-256"]),
    ("unit_space_missing", remove("unit_space.npz"), False, "onnx", ["unit_space.npz", "missing"]),
    ("onnx_missing", remove("model.onnx"), False, "torch", ["model.onnx", "missing"]),
    ("safetensors_missing", remove("vit/model.safetensors"), False, "onnx", ["vit/model.safetensors", "missing"]),
    ("config_missing", remove("vit/config.json"), False, "onnx", ["vit/config.json", "missing"]),
    ("check_parts_missing", remove("check_parts.npz"), False, "onnx", ["check_parts.npz", "missing"]),
    ("manifest_missing", remove("manifest.json"), False, "onnx", ["manifest.json", "missing"]),
    ("manifest_truncated", write("manifest.json", '{"format": 1, "sha2'), False, "onnx", ["manifest.json", "not valid JSON"]),
    ("manifest_escapes_bundle", lambda d, _: edit_json(d / "manifest.json", lambda m: {**m, "sha256": {**m["sha256"], "../x": "0" * 64}}),
     False, "onnx", ["manifest.json", "outside the bundle"]),
    ("bundle_is_a_file", lambda d, _: (shutil.rmtree(d), d.write_text("x")), False, "onnx", ["bundle.json missing"]),
]


def test_the_hostile_table_is_large_enough():
    assert len(BUNDLE_CASES) + len(REVIEW_CASES) + len(NOT_COUNTS) + len(EXPORT_CASES) + len(RENDER_CASES) + len(PARAMS_CASES) >= 80


@pytest.mark.parametrize("case, tamper, rehashed, engine, fragments", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_a_tampered_bundle_is_refused_in_one_line(tiny_bundle, networks, part, tmp_path, capsys, case, tamper, rehashed,  # noqa: F811
                                                   engine, fragments):
    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, d)
    tamper(d, networks)
    if rehashed:
        rehash(d)
    before = snapshot(tmp_path)
    out = tmp_path / "results.csv"
    rc = cli_main(["inspect", str(part), "--bundle", str(d), "--engine", engine, "--out", str(out)])
    assert rc == 2, case
    one_line_error(capsys.readouterr().err, *fragments)
    assert snapshot(tmp_path) == before and not out.exists()


def test_the_untouched_copy_is_judged_by_both_engines(tiny_bundle, part, tmp_path, capsys):  # noqa: F811
    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, d)
    for engine in ("onnx", "torch"):
        assert cli_main(["inspect", str(part), "--bundle", str(d), "--engine", engine]) == 0, capsys.readouterr().err


def test_the_check_parts_are_each_class_and_load_is_fast(tiny_bundle):  # noqa: F811
    import time

    t = time.perf_counter()
    b = bundle_format.load(tiny_bundle)
    took = time.perf_counter() - t
    assert took < 1.0, took  # the schema and every hash: ~10 ms for the tiny bundle
    assert 1 <= len(b.check.views) <= 8 and b.check.proba.shape == (len(b.check.views), len(b.classes))
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())["sha256"]
    assert set(bundle_format.REQUIRED) <= set(manifest)
    assert all(manifest[rel] == bundle_format.sha256(tiny_bundle / rel) for rel in manifest)


# --------------------------------------------------------------------------- export

EXPORT_CASES = [
    (["--opset", "0"], ["--opset must be an ONNX opset in [14, 21], got 0"]),
    (["--opset", "-3"], ["--opset must be an ONNX opset"]),
    (["--opset", "99"], ["--opset must be an ONNX opset", "99"]),
    (["--opset", "13"], ["--opset must be an ONNX opset"]),
    (["--opset", "seventeen"], ["--opset", "invalid int value"]),
    (["--opset", "1e3"], ["--opset", "invalid int value"]),
    (["--opset"], ["--opset", "expected one argument"]),
    (["--bundle", "no/such/bundle"], ["no/such/bundle"]),
    (["--surprise"], ["unrecognized arguments"]),
]


@pytest.mark.parametrize("args, fragments", EXPORT_CASES, ids=[" ".join(a) for a, _ in EXPORT_CASES])
def test_bad_export_arguments_one_line(tiny_bundle, tmp_path, capsys, args, fragments):  # noqa: F811
    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, d)
    before = snapshot(tmp_path)
    argv = ["export", *args] if "--bundle" in args else ["export", "--bundle", str(d), *args]
    assert cli_main(argv) == 2
    one_line_error(capsys.readouterr().err, *fragments)
    assert snapshot(tmp_path) == before


RENDER_CASES = [
    (["--n", "1000000000000"], ["--n must be a positive integer (1 to 100,000)"]),
    (["--n", "0"], ["--n must be a positive integer"]),
    (["--n", "-5"], ["--n must be a positive integer"]),
    (["--n", "many"], ["--n must be a positive integer", "many"]),
]


@pytest.mark.parametrize("args, fragments", RENDER_CASES, ids=[" ".join(a) for a, _ in RENDER_CASES])
def test_render_sizes_are_bounded(tiny_bundle, tmp_path, capsys, args, fragments):  # noqa: F811
    before = snapshot(tmp_path)
    assert cli_main(["render", *args, "--out", str(tmp_path / "lot"), "--bundle", str(tiny_bundle)]) == 2
    one_line_error(capsys.readouterr().err, *fragments)
    assert snapshot(tmp_path) == before and not (tmp_path / "lot").exists()


def test_export_into_a_tampered_bundle_is_refused_and_a_good_one_stays_proven(tiny_bundle, tmp_path, capsys):  # noqa: F811
    d = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, d)
    edit_json(d / "bundle.json", set_key("nsoartc.gain", -1.0))
    before = snapshot(tmp_path)
    assert cli_main(["export", "--bundle", str(d)]) == 2
    one_line_error(capsys.readouterr().err, "nsoartc.gain")
    assert snapshot(tmp_path) == before
    shutil.rmtree(d)
    shutil.copytree(tiny_bundle, d)
    (d / "model.onnx").unlink()  # export rewrites a missing graph, proves it, and records its hash
    assert cli_main(["export", "--bundle", str(d), "--opset", "17"]) == 0
    b = bundle_format.load(d)
    from vitinspect.deploy.engine import make_engine

    make_engine(b, "onnx")


# --------------------------------------------------------------------------- review

EVAL_BASE = {"operating_point": {"class": "passed", "threshold": 0.4},
             "lot": {"operating_point": {"escape": {"k": 3, "n": 200, "rate": 0.015, "low": 0.005, "high": 0.043},
                                         "false_reject": {"k": 90, "n": 1800, "rate": 0.05, "low": 0.041, "high": 0.061},
                                         "predicted_counts": {"passed": 1700, "tilt_x": 100}}},
             "test": {"operating_point": {"macro_f1_defects": {"value": 0.9, "low": 0.85, "high": 0.94}}}}


# A base figure that is not a finite count: never significant, whatever the workspace says.
NOT_COUNTS = [
    ("lot.operating_point.escape.k", math.nan),
    ("lot.operating_point.escape.n", math.inf),
    ("lot.operating_point.escape.k", -3),
    ("lot.operating_point.escape.k", 2.5),
    ("lot.operating_point.escape.k", "3"),
    ("lot.operating_point.escape.k", "~delete"),
    ("lot.operating_point.escape.n", 0),
    ("lot.operating_point.escape.k", 10 ** 6),  # more than n
    ("lot.operating_point.false_reject.n", -math.inf),
    ("lot.operating_point.false_reject.k", True),
    ("lot.operating_point.false_reject", "high"),
    ("test.operating_point.macro_f1_defects.low", math.nan),
    ("test.operating_point.macro_f1_defects.value", "0.9"),
    ("lot.operating_point.predicted_counts", {"passed": "many", "tilt_x": math.nan}),
]


@pytest.mark.parametrize("keys, value", NOT_COUNTS, ids=[f"{k}={v!r}" for k, v in NOT_COUNTS])
def test_a_base_figure_that_is_not_a_count_is_not_comparable(keys, value):
    base = with_value(keys, value, EVAL_BASE)
    figure = {"escape": "escape rate on the lot", "false_reject": "false-reject rate on the lot",
              "macro_f1_defects": "defect macro-F1 on test"}.get(keys.split(".")[2])
    j = review.verdict_of(base, EVAL_BASE)  # identical figures elsewhere
    if figure:
        assert j["figures"][figure][0] == "not comparable", j
    assert j["overall"] in ("not comparable", "unchanged within noise"), j
    assert all(w not in ("worse", "better") for w, _ in j["figures"].values()), j
    md = review.build_report("main", "", "", base, EVAL_BASE, None)  # the report renders too
    assert "Verdict: **worse**" not in md and "nan %" not in md and "(nan" not in md and "nan of" not in md


def _git_repo(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    subprocess.run("git init -q -b main && git add -A && git -c user.email=t@e -c user.name=t commit -qm base", cwd=root,
                   shell=True, check=True)


GOOD = json.dumps(EVAL_BASE)
REVIEW_CASES = [
    ("base_eval_truncated", {"reports/evaluation.json": GOOD[:40]}, {}, ["reports/evaluation.json at revision main", "not valid JSON"]),
    ("base_eval_list", {"reports/evaluation.json": "[1, 2]"}, {}, ["reports/evaluation.json at revision main", "JSON object"]),
    ("base_eval_bare_number", {"reports/evaluation.json": "NaN"}, {}, ["reports/evaluation.json at revision main"]),
    ("base_confusion_malformed", {"metrics/confusion_matrix.json": '{"labels": ["a"], "counts": [[1, "x"]]}'}, {},
     ["metrics/confusion_matrix.json at revision main", "not a confusion matrix"]),
    ("base_confusion_not_json", {"metrics/confusion_matrix.json": "{{"}, {}, ["metrics/confusion_matrix.json at revision main"]),
    ("base_dvc_lock_not_yaml", {"reports/evaluation.json": GOOD, "dvc.lock": "stages: [unclosed"}, {},
     ["dvc.lock at revision main", "not valid YAML"]),
    ("base_params_a_list", {"reports/evaluation.json": GOOD, "params.yaml": "- 1\n- 2\n"}, {},
     ["params.yaml at revision main", "YAML mapping"]),
    ("workspace_eval_truncated", {"reports/evaluation.json": GOOD}, {"reports/evaluation.json": GOOD[:30]},
     ["reports/evaluation.json (workspace)", "not valid JSON"]),
    ("workspace_metrics_not_utf8", {"reports/evaluation.json": GOOD}, {"metrics/eval.json": b"\xff\xfe"},
     ["metrics/eval.json (workspace)"]),
    ("workspace_data_a_list", {"reports/evaluation.json": GOOD}, {"metrics/data.json": "[]"}, ["metrics/data.json (workspace)"]),
    ("unknown_base", {"reports/evaluation.json": GOOD}, {}, ["--base 'nowhere'"]),
]


@pytest.mark.parametrize("case, committed, workspace, fragments", REVIEW_CASES, ids=[c[0] for c in REVIEW_CASES])
def test_a_malformed_review_input_names_its_file_and_revision(in_tmp, capsys, case, committed, workspace, fragments):
    _git_repo(in_tmp, committed)
    for rel, content in workspace.items():
        (in_tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (in_tmp / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(in_tmp)
    argv = ["--base", "nowhere" if case == "unknown_base" else "main", "--out", "reports/pr.md"]
    with pytest.raises(SystemExit) as exit_:
        run_stage(review.main, argv)
    assert exit_.value.code == 2
    one_line_error(capsys.readouterr().err, *fragments)
    assert snapshot(in_tmp) == before


# --------------------------------------------------------------------------- validate

# Through the validate stage (what every stage depends on): one line, params.yaml and the stage's output untouched.
PARAMS_CASES = [
    ("bundle.false_alarm_rate", 1e-17, "bundle.false_alarm_rate must be in [1e-06, 1)"),
    ("lot.n_parts", 10 ** 12, "lot.n_parts must be at most 1,000,000"),
    ("data.n_images", 10 ** 9, "data.n_images must be at most 1,000,000"),
    ("pretrain.n_parts", 10 ** 8, "pretrain.n_parts must be at most"),
    ("bundle.probes_per_kind", 10 ** 9, "bundle.probes_per_kind must be an integer in [2, 10,000]"),
    ("bundle.pixel_clip", ".nan", "bundle.pixel_clip must be a finite number"),
    ("data.image_size", 10 ** 6, "data.image_size must be at most 1,024"),
    ("train.lr", ".inf", "train.lr must be a finite number"),
    ("data.seed", 2 ** 40, "data.seed must be an integer in [0, 4294967295]"),
    ("bundle.shift_px", 32, "bundle.shift_px (32) must be under data.image_size (32)"),
    ("attention.extra_images", ["gone.png"], "attention.extra_images entry 'gone.png' is missing"),
    ("baseline.grid.C", [], "baseline.grid.C must not be empty"),
]


@pytest.mark.parametrize("key, value, fragment", PARAMS_CASES, ids=[f"{k}={v}" for k, v, _ in PARAMS_CASES])
def test_validate_refuses_what_a_stage_cannot_take(in_tmp, capsys, key, value, fragment):
    import yaml

    params = tiny_dict()
    *parents, leaf = key.split(".")
    node = params
    for k in parents:
        node = node[k]
    node[leaf] = value
    text = yaml.safe_dump(params, sort_keys=False).replace("'.nan'", ".nan").replace("'.inf'", ".inf")
    (in_tmp / "params.yaml").write_text(text)
    (in_tmp / "logs").mkdir()
    (in_tmp / "logs/validate.json").write_text('{"params": "valid"}\n')  # an output from an earlier run
    before = snapshot(in_tmp)
    with pytest.raises(SystemExit) as exit_:
        run_stage(load_stage("validate").main, ["--params", "params.yaml", "--out", "logs/validate.json"])
    assert exit_.value.code == 2
    one_line_error(capsys.readouterr().err, "params.yaml", fragment)
    assert snapshot(in_tmp) == before

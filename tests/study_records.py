"""A fixed set of collected study results, committed one experiment per commit in a throwaway git repo.

The study reads an experiment's details with ``git show <rev>:<path>``; here every record's files are a
real commit, so the report is rendered through the same reads as after `make study`, with no patching.
Values come from a seeded generator: the same records, byte for byte, on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np

CLASSES = ["passed", "tilt_x", "tilt_y", "retracted"]
# setting -> seeds, the overrides its params show
SETTINGS = {
    "base": (3, {}), "epochs5": (1, {"train": {"epochs": 5}}), "ratio0.05": (1, {"data": {"passed_ratio": 0.05}}),
    "ratio0.2": (1, {"data": {"passed_ratio": 0.2}}), "raw": (1, {}), "head": (2, {}), "last_blocks": (1, {}),
    "lora": (1, {}), "big": (1, {}), "n1000": (2, {"data": {"n_images": 1000}}), "pt-full": (1, {"model": {"source": "pretrain"}}),
    "pt-head": (2, {"model": {"source": "pretrain"}}), "pt-last_blocks": (1, {}), "pt-lora": (1, {}),
    "frac0.1": (1, {}), "pt-frac0.1": (1, {}), "pt-big": (1, {}),
    # issue 25: the raw-pretrained start, several seeds each (appended: the records above keep their values)
    "ptraw-full": (3, {"model": {"source": "pretrain"}, "pretrain": {"input": "raw"}}), "ptraw-head": (3, {"model": {"source": "pretrain"}}),
    "ptraw-rawft": (3, {"model": {"source": "pretrain"}}), "ptraw-frac0.1": (3, {}), "ptraw-last_blocks": (1, {}),
    "ptraw-lora": (1, {}), "ptraw-big": (3, {"pretrain": {"input": "raw"}}),
}

# issue 26: the same settings on Blender parts (study run --plan blender), for the renderer section
BLENDER = {f"blender-{k}": (3, {"data": {"renderer": "blender", **extra.get("data", {})}, **{s: v for s, v in extra.items() if s != "data"}})
           for k, extra in (("base", {}), ("epochs5", {"train": {"epochs": 5}}), ("ratio0.2", {"data": {"passed_ratio": 0.2}}), ("raw", {}))}
# The composite's defect contrast (metrics/data.json), fixed per renderer: not drawn, so the records above keep their values
CONTRAST = {"2d": {"tilt_x": 2.94, "tilt_y": 3.49, "retracted": 2.07}, "blender": {"tilt_x": 3.02, "tilt_y": 1.67, "retracted": 1.29}}


# A fixed author, committer and date: the same commits, so the same revs in the report's table of runs.
GIT_ENV = {"GIT_AUTHOR_NAME": "study", "GIT_AUTHOR_EMAIL": "study@example.com", "GIT_AUTHOR_DATE": "2026-12-01T00:00:00Z",
           "GIT_COMMITTER_NAME": "study", "GIT_COMMITTER_EMAIL": "study@example.com", "GIT_COMMITTER_DATE": "2026-12-01T00:00:00Z",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


# The lot's judges (issue 37), fixed per setting: (k, n) of good parts rejected and of defective parts passed
LOT = {"base": {"verdict": ((0, 1800), (14, 200)), "classifier": ((861, 1800), (1, 200)), "gate_at": ((42, 1800), (1, 200)),
                "classifier_at": ((858, 1800), (1, 200)), "svm_at": ((1700, 1800), (1, 200)), "cnn_at": ((300, 1800), (1, 200))},
       "ratio0.2": {"verdict": ((0, 1800), (2, 200)), "classifier": ((20, 1800), (1, 200)), "gate_at": ((3, 1800), (1, 200)),
                    "classifier_at": ((20, 1800), (1, 200)), "svm_at": ((90, 1800), (1, 200)), "cnn_at": ((5, 1800), (1, 200))}}


def _lot_files(setting: str) -> tuple[dict, dict]:
    """(reports/evaluation.json's "lot", reports/baseline.json's lot blocks) of :data:`LOT`'s counts."""
    from vitinspect.evaluation.decision import rate

    j = {judge: {"false_reject": rate(*fr), "escape": rate(*esc)} for judge, (fr, esc) in LOT[setting].items()}
    lot = {"combined": j["verdict"], "operating_point": j["classifier"],
           "at_escape_target": {"gate": j["gate_at"], "classifier": j["classifier_at"]}}
    return lot, {"lot": {"at_escape_target": j["svm_at"]}, "cnn": {"lot": {"at_escape_target": j["cnn_at"]}}}


def _files(name: str, rng, contrast: bool = False, cnn: bool = False, lot: bool = False) -> dict[str, object]:
    r = lambda lo=0.0, hi=1.0: round(float(rng.uniform(lo, hi)), 6)  # noqa: E731
    per = {c: {"recall": r(0.4), "f1": r(0.4)} for c in CLASSES}
    test = {"accuracy": r(0.6), "macro_f1": r(0.5), "escape": {"rate": r(0, 0.02)}, "false_reject": {"rate": r(0, 0.3)},
            "per_class": per, "xy_confusion": {"tilt_x->tilt_y": r(0, 0.1), "tilt_y->tilt_x": r(0, 0.1)}}
    scores = {k: {"relevance_mass": r(0, 0.4), "pointing_game": r(), "baseline": r(0, 0.05)} for k in ("nsoartc", "raw")}
    groups = {f"block_{b:02d}.{p}": {"mean_relative_change": r(0, 2)} for b in range(2) for p in ("attention", "mlp")}
    n = 40
    truth = rng.choice(CLASSES, n)
    vit = np.where(rng.random(n) < 0.8, truth, rng.choice(CLASSES, n))
    peer = np.where(rng.random(n) < 0.7, truth, rng.choice(CLASSES, n))
    counts = [[int(rng.integers(0, 50)) for _ in CLASSES] for _ in CLASSES]
    files = {
        "reports/evaluation.json": {"test": {"argmax": test}},
        "reports/attention.json": {"model_input": "nsoartc", "methods": {"gradient": scores},
                                   "token_norms": {"max_over_median": r(1, 5), "high_norm_share": r(0, 0.05),
                                                   "high_norm_in_mask": r(0, 0.5), "mask_patch_share": r(0, 0.2)}},
        "reports/audit.json": {"relative_change_by_group": groups},
        "metrics/confusion_matrix.json": {"labels": CLASSES, "counts": counts,
                                          "normalized": [[c / max(1, sum(row)) for c in row] for row in counts]},
        "metrics/baseline.json": {"accuracy": r(0.6), "macro_f1": r(0.5), "escape_rate": r(0, 0.02), "false_reject_rate": r(0, 0.3),
                                  "per_class": {"passed": {"recall": r()}}},
        "reports/baseline.json": {"logistic": {"test": {"accuracy": r(0.5)}}},
        "plots/baseline_confusion.json": [{"actual": t, "predicted": p} for t, p in zip(truth, peer)],
        "plots/predictions.csv": "id,label,predicted\n" + "".join(f"part-{i:05d},{t},{p}\n" for i, (t, p) in enumerate(zip(truth, vit))),
    }
    if cnn:  # the CNN peer, right on 95 % of the parts; its own generator, so every other value stays as it was
        own = np.random.default_rng(sum(map(ord, name)))
        guess = np.where(own.random(n) < 0.95, truth, own.choice(CLASSES, n))
        files["metrics/baseline_cnn.json"] = {"accuracy": round(float((guess == truth).mean()), 6), "macro_f1": 0.97,
                                              "escape_rate": 0.001, "false_reject_rate": 0.02, "per_class": {"passed": {"recall": 0.9}}}
        files["plots/baseline_cnn_confusion.json"] = [{"actual": t, "predicted": p} for t, p in zip(truth, guess)]
    setting = name[len("study-"):].rsplit("-s", 1)[0]
    if lot and setting in LOT:
        files["reports/evaluation.json"]["lot"], extra = _lot_files(setting)
        files["reports/baseline.json"].update(extra)
    if contrast:
        files["metrics/data.json"] = {"defect_contrast": CONTRAST["blender" if name.startswith("study-blender-") else "2d"]}
    if name.startswith(("study-pt-full", "study-pt-big", "study-ptraw-full", "study-ptraw-big")):
        files["dvclive/pretrain/plots/metrics/reconstruction_loss.tsv"] = "step\treconstruction_loss\n" + "".join(
            f"{e}\t{r(0.04, 0.2)}\n" for e in range(5))
        files["plots/pretrain.png"] = b"\x89PNG not a real image " + name.encode()
    return files


def _params(setting: str, settings: dict) -> dict:
    p = {"data": {"n_images": 3000, "image_size": 64, "passed_ratio": 0.02, "split": {"train": 0.7}}, "train": {"epochs": 2},
         "model": {"source": "scratch"}, "pretrain": {"n_parts": 500, "input": "nsoartc", "epochs": 5, "mask_ratio": 0.75}}
    for section, values in settings[setting][1].items():
        p[section] = {**p[section], **values}
    return p


def committed_records(repo: Path, settings: dict = SETTINGS, contrast: bool = False, cnn: bool = False,
                      lot: bool = False) -> dict[str, dict]:
    """name -> {rev, params, metrics}, as ``collect`` returns them, each rev a commit of ``repo`` holding its files.
    ``settings``: SETTINGS, or e.g. {**SETTINGS, **BLENDER} (appended: the records before them keep their values);
    ``contrast``: also commit metrics/data.json (then every rev differs from the golden report's); ``cnn``: also the CNN
    peer's figures and records (the golden report's runs predate it); ``lot``: also the lot judges' counts (:data:`LOT`,
    issue 37; the golden report's runs predate them too)."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "main")
    rng = np.random.default_rng(27)
    records = {}
    for setting, (seeds, _) in settings.items():
        for seed in range(seeds):
            name = f"study-{setting}-s{seed}"
            _git(repo, "rm", "-rq", "--ignore-unmatch", ".")
            files = _files(name, rng, contrast, cnn, lot)
            for path, content in files.items():
                f = repo / path
                f.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    f.write_bytes(content)
                else:
                    f.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
            _git(repo, "add", "-A")
            _git(repo, "commit", "-qm", name)
            test = files["reports/evaluation.json"]["test"]["argmax"]
            eval_metrics = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "escape_rate": test["escape"]["rate"],
                            "false_reject_rate": test["false_reject"]["rate"], "per_class": {"passed": test["per_class"]["passed"]}}
            metrics = {"metrics/eval.json": eval_metrics,
                       "metrics/audit.json": {"trainable_pct": 100.0 if "head" not in setting else 2.5,
                                              "total_parameters": 1_500_000 if "big" in setting else 150_787},
                       "metrics/lot.json": {"escapes_per_million": 120.0 + seed, "false_reject_rate": 0.05}}
            records[name] = {"rev": _git(repo, "rev-parse", "HEAD"), "params": _params(setting, settings), "metrics": metrics}
    return records

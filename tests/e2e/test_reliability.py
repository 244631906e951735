"""Bad inputs, kills, reruns, determinism, the network guard and safe loading.

The bad-input table runs each stage's main() in-process (the contract: one line, exit 2, outputs
untouched); two cases also run as real processes for the exit code itself. Kills, reruns and
determinism go through real dvc in a fresh clone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from conftest import BIN, TESTS, digest, edit_params, outs_of, run, run_in_process, stage_cmd

pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


STAGES = ("prepare", "nsoartc", "pretrain", "train", "lot", "evaluate", "attention", "audit", "baseline", "bundle")
CASES = yaml.safe_load((TESTS / "bad_inputs.yaml").read_text())


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def break_input(root: Path, what: str) -> str | None:
    """Break one thing; return a replacement command when the case is about the command itself."""
    if what == "missing_parts":
        shutil.rmtree(root / "data/parts")
    elif what == "truncated_parts_arrow":
        truncate(next((root / "data/parts/train").glob("*.arrow")))
    elif what == "too_few_passed":
        edit_params(root / "params.yaml", nsoartc__min_unit_space=1000)
    elif what == "truncated_nsoartc_arrow":
        truncate(next((root / "data/nsoartc/train").glob("*.arrow")))
    elif what == "pretrained_missing_path":
        edit_params(root / "params.yaml", model__source="pretrained", model__name_or_path="nowhere/vit")
    elif what == "pretrained_not_a_vit":
        (root / "notvit").mkdir()
        (root / "notvit/config.json").write_text(json.dumps({"model_type": "bert"}))
        edit_params(root / "params.yaml", model__source="pretrained", model__name_or_path="notvit")
    elif what == "output_outside_project":
        return stage_cmd(root, "train").replace("--metrics metrics/train.json", "--metrics ../escaped.json")
    elif what == "truncated_model_weights":
        truncate(root / "models/vit/model.safetensors")
    elif what == "missing_model":
        shutil.rmtree(root / "models/vit")
    elif what == "model_config_not_vit_json":
        (root / "models/vit/config.json").write_text("{not json")
    elif what in ("class_count_mismatch", "image_size_mismatch"):
        # A params change that makes the data disagree with the trained model, data stages rerun.
        if what == "class_count_mismatch":
            edit_params(root / "params.yaml", data__classes=["passed", "tilt_x", "tilt_y"])
        else:
            edit_params(root / "params.yaml", data__image_size=64)
        for s in ("prepare", "nsoartc"):
            run_in_process(stage_cmd(root, s))
    elif what == "missing_unit_space":
        (root / "data/unit_space.npz").unlink()
    elif what == "missing_lot":
        shutil.rmtree(root / "data/lot")
    elif what == "extra_image_missing":
        edit_params(root / "params.yaml", attention__extra_images=["photos/none.png"])
    elif what == "extra_image_empty":
        (root / "empty.png").write_bytes(b"")
        edit_params(root / "params.yaml", attention__extra_images=["empty.png"])
    elif what == "truncated_init_weights":
        truncate(root / "models/vit_init/model.safetensors")
    elif what == "unknown_reference_model":
        edit_params(root / "params.yaml", audit__reference_models=["acme/not-a-vit"])
    elif what == "parts_cut_at_batch_boundary":
        # A valid Arrow stream with fewer record batches: it reads, as a shorter split, unless row counts are checked.
        import pyarrow as pa

        f = next((root / "data/parts/train").glob("*.arrow"))
        table = pa.ipc.open_stream(f.read_bytes()).read_all()
        with pa.OSFile(str(f), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.slice(0, table.num_rows - 10).to_batches(max_chunksize=10):
                writer.write_batch(batch)
    elif what == "parts_missing_split":
        shutil.rmtree(root / "data/parts/val")
        (root / "data/parts/dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    elif what == "views_reordered":
        edit_params(root / "params.yaml", data__views=["center", "right", "left"])  # valid params, but the parts hold left before right
    elif what == "nsoartc_missing_column":
        import datasets

        test = root / "data/nsoartc/test"
        datasets.load_from_disk(str(test)).remove_columns(["label"]).save_to_disk(str(root / "test_without_label"))
        shutil.rmtree(test)
        shutil.move(root / "test_without_label", test)
    elif what == "model_config_disagrees_with_weights":
        config = json.loads((root / "models/vit/config.json").read_text())
        config["intermediate_size"] *= 2
        (root / "models/vit/config.json").write_text(json.dumps(config))
    elif what == "malformed_image_processor":
        proc = json.loads((root / "models/vit/preprocessor_config.json").read_text())
        proc["image_mean"] = [0.5, 0.5]
        (root / "models/vit/preprocessor_config.json").write_text(json.dumps(proc))
    elif what == "extra_image_fifo":
        os.mkfifo(root / "pipe.png")
        edit_params(root / "params.yaml", attention__extra_images=["pipe.png"])
    elif what == "extra_image_decompression_bomb":
        (root / "bomb.png").write_bytes(png_header_only(30000, 30000))
        edit_params(root / "params.yaml", attention__extra_images=["bomb.png"])
    else:  # pragma: no cover
        raise KeyError(what)
    return None


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims width x height pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


# The exit-code contract is also checked in real processes, for these rows (stages that start quickly:
# the contract is cli.run_stage's, the same for every stage).
IN_SUBPROCESS = {("nsoartc", "missing_parts"), ("lot", "missing_unit_space")}


@pytest.mark.parametrize("stage,what,fragment", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(project, monkeypatch, capfd, stage, what, fragment):
    monkeypatch.chdir(project)
    cmd = break_input(project, what) or stage_cmd(project, stage)
    before = digest(outs_of(project, stage))
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_in_process(cmd)
    err = capfd.readouterr().err
    assert exit_.value.code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], err[-2000:]
    assert digest(outs_of(project, stage)) == before
    assert not (project.parent / "escaped.json").exists()
    if (stage, what) in IN_SUBPROCESS:
        proc = run(cmd, project, check=False)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == lines, proc.stderr[-2000:]
        assert digest(outs_of(project, stage)) == before
        if stage == "nsoartc":  # the traceback, for those who ask (once: it is the same switch for every stage)
            debug = run(cmd, project, check=False, env={"VITINSPECT_DEBUG": "1"})
            assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_fresh_clone_killed_mid_stage_recovers_identical_bytes_and_a_clean_tree(killed_clone, built_project):
    """A fresh clone (no data, no cache) reproduced by plain `dvc repro`, SIGKILLed three times on the way
    (conftest.KILLS, run in the background from the start of the test run): nsoartc while renaming its
    outputs into place; train in the middle of its second epoch; and the resumed train in the middle of
    writing its next checkpoint. Each rerun completes; train resumes (past the cut checkpoint) and ends
    with the uninterrupted run's weights; the clone's tree is, byte for byte, the uninterrupted run's
    commit, so `git status` is clean and dvc has nothing left to do. (evaluate and attention killed by a
    full disk, and every stage's all-or-nothing rename: test_failures.py.)"""
    clone = killed_clone / "clone"
    facts = json.loads((killed_clone / "facts.json").read_text())
    for kill in facts["kills"]:
        assert kill["returncode"] != 0 and kill["last_stage"] == kill["stage"], \
            f"{kill['stage']} was not killed: the test did not test anything\n{kill['tail']}"
    assert facts["checkpoints"] == ["checkpoint-6", "checkpoint-12"]
    assert "model.safetensors" in facts["cut"] and "trainer_state.json" not in facts["cut"]  # the highest is the cut one
    assert json.loads((clone / "logs/train_run.json").read_text())["resumed"] is True
    a = load_file(built_project / "models/vit/model.safetensors")
    b = load_file(clone / "models/vit/model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert "up to date" in run("dvc status", clone).stdout
    leftovers = [p for p in clone.rglob(".*.tmp") if ".dvc" not in p.parts]
    assert not leftovers, leftovers
    assert not (clone / ".cache/checkpoints/train").exists()
    # The clone's commit holds no outputs: against the uninterrupted run's commit, every tracked output (dvc.lock, metrics, plots, reports)
    # has its bytes, and the clone holds nothing else that git would see.
    run(f"git fetch -q {shlex.quote(str(built_project))} main && git reset -q FETCH_HEAD", clone)
    assert run("git status --porcelain", clone).stdout == ""
    for name in ("dvc.lock", "metrics/train.json", "metrics/eval.json", "metrics/attention.json", "metrics/audit.json"):
        assert (built_project / name).read_bytes() == (clone / name).read_bytes(), name


def test_no_stage_opens_a_network_connection(built_project, tmp_path):
    log = built_project.parent / "net.log"
    assert log.read_text() == ""  # no connection was attempted ...
    guarded = {line.split()[1] for line in (built_project.parent / "net.log.on").read_text().splitlines()}
    assert {f"{s}.py" for s in STAGES} <= guarded, guarded  # ... by any stage, each of which ran under the guard
    # The guard itself works: a connection attempt is refused and recorded.
    probe = tmp_path / "probe.log"
    proc = run(f"{shlex.quote(str(BIN / 'python'))} -c \"import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)\"",
               tmp_path, check=False, env={"VITINSPECT_TEST_NET_LOG": str(probe)})
    assert proc.returncode != 0 and "network disabled" in proc.stderr and "connect" in probe.read_text()



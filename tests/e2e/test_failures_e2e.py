"""Issue 14: every failure ends in one line and leaves outputs whole.

Bad params through dvc repro (the validate stage), a kill in the middle of a checkpoint write, a
diverged training run, non-finite figures, all-or-nothing outputs, and the catch-all.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from conftest import TESTS, copy_project, run, with_value
from vitinspect.core.errors import VitinspectError


pytestmark = pytest.mark.slow  # runs real dvc (tests/e2e/)


# --------------------------------------------------------------------------- cheap, in-process


class Planted:
    """What an attacker plants: a pickle that runs a command when loaded."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


# --------------------------------------------------------------------------- end to end, real dvc

STAGE_OUTS = None


def all_outs(root: Path) -> list[Path]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return [root / (o if isinstance(o, str) else next(iter(o))) for s in stages.values() for o in s.get("outs", [])]


def params_text(base: dict, key: str, value) -> str:
    return yaml.safe_dump(with_value(key, value, base), sort_keys=False)


@pytest.mark.slow
def test_the_bad_params_table_through_dvc_repro_keeps_every_output(built_project, tmp_path):
    from conftest import digest

    root = copy_project(built_project, tmp_path / "proj")
    outs = all_outs(root)
    assert all(p.exists() for p in outs)
    before = digest(outs)
    good = (root / "params.yaml").read_text()
    base = yaml.safe_load(good)
    # (name, params.yaml, what the one line says, whether DVC itself may refuse the file before any stage runs)
    # Every row of the table is refused in-process (test_params.py); through dvc, every 16th row (the path is
    # the same: dvc runs validate, validate reads the schema) and the files only DVC itself may choke on.
    # Only the rows this project's params make bad: some rows are bad against the defaults alone (the memory a
    # model needs, the good parts the gate needs); in-process every row is judged on the defaults.
    rows = [r for r in yaml.safe_load((TESTS / "bad_params.yaml").read_text()) if _refused(with_value(r[0], r[1], base))][::16]
    # A key dvc.yaml interpolates (${data.folders.path}) is DVC's to miss first: it refuses dvc.yaml, naming the key,
    # before any stage runs (so nothing is lost either).
    interpolated = set(re.findall(r"\$\{([^}]+)\}", (root / "dvc.yaml").read_text()))
    cases = [(f"{k}={v!r}"[:60], params_text(base, k, v), k if k in interpolated else frag.split(" (")[0], k in interpolated)
             for k, v, frag in rows]
    cases += [
        ("not utf-8", good.replace("passed_ratio", "passed_r\xe4tio").encode("latin-1"), "utf-8", True),
        ("duplicate section", good + "train:\n  epochs: 3\n", "duplicate", True),
        # At the top level, outside every params section: validate reruns because params.yaml is also a file dep.
        # 11,110 values when expanded. DVC itself expands the file (about 5 s of CPU per 10^5 values here; a 10^7 bomb
        # took over 5 GB and minutes before it was stopped), so a bigger bomb hangs DVC, which reads params.yaml before any stage
        # (docs/errors.md); run directly, a stage refuses any size at once (test_params.py).
        ("alias bomb", "bomb: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"bomb{i}: &a{i} [{', '.join([f'*a{i-1}'] * 10)}]\n" for i in range(1, 4)) + good, "expands to more than", False),
    ]
    timings = []
    for name, text, fragment, dvc_may_refuse in cases:
        path = root / "params.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        start = time.perf_counter()
        proc = run("dvc repro", root, check=False)
        timings.append(time.perf_counter() - start)
        said = proc.stdout + proc.stderr
        assert proc.returncode != 0, name
        assert fragment.lower() in said.lower(), (name, said[-1500:])
        assert "Traceback" not in said, name
        assert "Running stage 'validate'" in proc.stdout or dvc_may_refuse, (name, said[-1500:])
        assert not ({"prepare", "nsoartc", "train", "evaluate", "attention", "audit"}
                    & set(__import__("re").findall(r"Running stage '([^']+)'", proc.stdout))), name
        assert run("git status --porcelain", root).stdout.splitlines() == [" M params.yaml"], name
        missing = [str(p) for p in outs if not p.exists()]
        assert not missing, (name, missing)
    assert digest(outs) == before  # not one output touched by any of the bad files
    (root / "params.yaml").write_text(good)
    assert "up to date" in run("dvc status", root).stdout
    print(f"\n{len(cases)} bad params files through dvc repro: median {sorted(timings)[len(timings) // 2]:.1f} s, max {max(timings):.1f} s")


# A kill in the middle of a checkpoint write, then `dvc repro`: in the fresh-clone kill test
# (test_reliability.py), which cuts the resumed run's checkpoint.


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["evaluate", "attention"])
def test_a_full_disk_during_evaluate_or_attention_leaves_every_old_output(project, monkeypatch, capfd, stage):
    """The stage runs in this process (its main(), through the stage entry point) with the file-size limit
    `ulimit -f` sets: writing past it fails with EFBIG, as a full disk fails with ENOSPC (Python ignores
    SIGXFSZ). The small outputs fit, the figures do not."""
    import resource

    from conftest import digest, outs_of, run_in_process, stage_cmd

    root = project
    outs = outs_of(root, stage)
    for p in outs:  # mark the old outputs, so a replaced one shows even with the same bytes
        for f in ([*p.rglob("*.png")] if p.is_dir() else [p]):
            with open(f, "ab") as fh:
                fh.write(b"old")
    before = digest(outs)
    monkeypatch.chdir(root)
    capfd.readouterr()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, hard))
    try:
        with pytest.raises(SystemExit) as exit_:
            run_in_process(stage_cmd(root, stage))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capfd.readouterr().err
    assert exit_.value.code == 2, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot write (File too large)" in lines[0], err[-2000:]
    assert digest(outs) == before
    assert not [p for p in root.rglob(".*.tmp") if ".dvc" not in p.parts]


def _refused(params: dict) -> bool:
    """Whether the params schema refuses ``params`` (what validate would say through dvc)."""
    from vitinspect.config.params import params_from_dict

    try:
        params_from_dict(params)
    except VitinspectError:
        return True
    return False

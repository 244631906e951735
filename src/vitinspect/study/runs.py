"""Queue the study's experiments, run them, and collect what each one measured.

``collect`` reads ``dvc exp show --json``; the details of one experiment are the report files committed
with it, read with ``git show <rev>:<path>`` (:func:`json_at`, :func:`bytes_at`).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from vitinspect.core.runtime import run_command
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import write_text
from vitinspect.review.revisions import at_revision
from vitinspect.study.arguments import dvc_sets
from vitinspect.study.interrupt import Guard, command
from vitinspect.study.plan import PREFIX, Experiment


def json_at(rev: str, path: str):
    """A JSON file (an object, or a list of records) as committed at ``rev``; None if it is not there. Every JSON
    read of the findings."""
    return at_revision(rev, path, (dict, list))


def _dvc(*args: str, check: bool = True) -> str:
    return run_command(["dvc", *args], check=check)


def run_plan(exps: list[Experiment], extra: dict, timeout_s: float) -> dict:
    """Queue every experiment (dropping earlier ones of the same name) and run the queue, one at a time.

    ``extra``: base overrides applied to every experiment (``study run --set``); an experiment's own
    overrides win where both name a key. Returns the timing: the whole run's wall seconds, and each
    experiment's from the commit times DVC gives the finished experiments (the queue runs one at a time,
    so an experiment took the time since the one before it finished, the first since the queue started).
    Interrupted (SIGINT, SIGTERM), it leaves nothing queued or running and the workspace as it was
    (:mod:`vitinspect.study.interrupt`).
    """
    t0 = time.time()
    with Guard([e.name for e in exps], queue_status) as guard:
        for e in exps:
            with guard.held():  # dvc rewrites params.yaml, stashes and detaches HEAD meanwhile: never cut short
                command(["dvc", "exp", "remove", e.name], check=False)
                command(["dvc", "exp", "run", "--queue", "-n", e.name,
                         *[a for s in dvc_sets({**extra, **e.overrides}) for a in ("-S", s)], *e.targets])
        guard.queued()
        queued = time.time()
        with guard.held():
            guard.started = True
            # no pipes: the worker it leaves behind would hold them open until the queue is drained
            command(["dvc", "queue", "start", "-j", "1"], output=False)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with guard.held():
                status = queue_status()
            if not {"Queued", "Running"} & set(status.values()):
                break
            time.sleep(3)
        else:
            raise VitinspectError(f"the study queue did not finish within {timeout_s:.0f} s (dvc queue status)")
    timing = {"experiments": len(exps), "queue_s": round(queued - t0, 1), "wall_s": round(time.time() - t0, 1),
              "per_experiment_s": durations([e.name for e in exps], finished_at(), queued), "set": extra}
    failed = [name for name, state in status.items() if state == "Failed" and name in {e.name for e in exps}]
    if failed:
        raise VitinspectError(f"{len(failed)} study experiment(s) failed; see dvc queue logs {failed[0]}")
    return timing


def finished_at(all_commits: bool = False) -> dict[str, float]:
    """experiment name -> the POSIX time its commit was made (when it finished), from ``dvc exp show``
    (``-A``: also experiments based on earlier commits)."""
    from datetime import datetime

    out = {}
    for base in json.loads(_dvc("exp", "show", "--json", *(["-A"] if all_commits else []))):
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                stamp = (rev.get("data") or {}).get("timestamp")
                if rev.get("name") and stamp:
                    out[rev["name"]] = datetime.fromisoformat(stamp).timestamp()
    return out


def durations(names: list[str], finished: dict[str, float], start: float) -> dict[str, float | None]:
    """Each experiment's seconds in a one-at-a-time queue: from the previous finish (or ``start``) to its own.
    None for one that did not finish after ``start`` (failed, or an older run of the same name)."""
    done = sorted((t, n) for n, t in finished.items() if n in set(names) and t >= start - 1)
    out, previous = dict.fromkeys(names), start
    for t, n in done:
        out[n], previous = round(t - previous, 1), t
    return out


def queue_status() -> dict[str, str]:
    """experiment name -> Queued / Running / Success / Failed ...: what `dvc queue status` lists, asked of
    DVC's API in this process (a poll every few seconds; a CLI start each time would cost a core-second)."""
    from dvc.repo import Repo

    with Repo() as repo:
        return {e.get("name") or e.get("rev", "?"): e["status"] for e in repo.experiments.celery_queue.status()}



def collect(all_commits: bool = False) -> dict[str, dict]:
    """name -> {rev, params, metrics} for every study experiment ``dvc exp show`` knows.

    all_commits: also experiments based on earlier commits (``dvc exp show -A``), e.g. after a commit
    made while the queue ran; where a name appears twice, the newest commit's wins.
    """
    out = {}
    for base in reversed(json.loads(_dvc("exp", "show", "--json", *(["-A"] if all_commits else [])))):
        for exp in base.get("experiments") or []:
            if ((exp.get("executor") or {}).get("state") or "success") != "success":
                continue  # queued, running or failed: no results of its own yet (a running one shows the workspace's)
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name")
                data = rev.get("data") or {}
                if not name or not name.startswith(PREFIX) or rev.get("error"):
                    continue
                out[name] = {
                    "rev": rev["rev"],
                    "params": (data.get("params") or {}).get("params.yaml", {}).get("data", {}),
                    "metrics": {k: v.get("data", {}) for k, v in (data.get("metrics") or {}).items()},
                }
    return out



def figures_of(record: dict, read=None) -> dict:
    """The figures each finding needs, from one experiment (NaN where absent).

    The headline comes from its metrics; the details (per-class figures at argmax on the test split,
    attention scores per input) from the report files committed with it (``read(rev, path)``).
    """
    read = read or json_at
    m = record["metrics"]
    rev = record.get("rev")

    def detail(path):
        return (read(rev, path) if rev else None) or {}

    aud = m.get("metrics/audit.json", {})
    test = detail("reports/evaluation.json").get("test", {}).get("argmax", {})
    att = detail("reports/attention.json")
    per = test.get("per_class", {})
    own = att.get("model_input", "nsoartc")
    method = att.get("methods", {}).get("gradient") or next(iter(att.get("methods", {}).values()), {})
    nan = float("nan")
    f = {
        "accuracy": test.get("accuracy", nan),
        "macro_f1": test.get("macro_f1", nan),
        "escape_rate": (test.get("escape") or {}).get("rate", nan),
        "false_reject_rate": (test.get("false_reject") or {}).get("rate", nan),
        "passed_recall": per.get("passed", {}).get("recall", nan),
        "xy_confusion": np.nanmean([v for v in (test.get("xy_confusion") or {}).values() if v is not None] or [nan]),
        "relevance_mass": method.get(own, {}).get("relevance_mass", nan),
        "pointing_game": method.get(own, {}).get("pointing_game", nan),
        "baseline": method.get(own, {}).get("baseline", nan),
        "trainable_pct": aud.get("trainable_pct", nan),
        "parameters": aud.get("total_parameters", nan),
        "lot_escapes_per_million": m.get("metrics/lot.json", {}).get("escapes_per_million", nan),
        "lot_false_reject_rate": m.get("metrics/lot.json", {}).get("false_reject_rate", nan),
    }
    for name in ("raw", "nsoartc"):
        for score in ("relevance_mass", "pointing_game"):
            f[f"{score}_{name}"] = method.get(name, {}).get(score, nan)
    f.update(lot_counts(detail("reports/evaluation.json").get("lot", {}), detail("reports/baseline.json")))
    return {k: float(v) if v is not None else nan for k, v in f.items()}


# The lot's judges (issue 37): (figure name, where in reports/evaluation.json's "lot" or reports/baseline.json, rate).
LOT_JUDGES = (("verdict", ("evaluation", "combined")), ("classifier", ("evaluation", "operating_point")),
              ("gate_at", ("evaluation", "at_escape_target", "gate")), ("classifier_at", ("evaluation", "at_escape_target", "classifier")),
              ("svm_at", ("baseline", "lot", "at_escape_target")), ("cnn_at", ("baseline", "cnn", "lot", "at_escape_target")))


def lot_counts(lot: dict, baseline: dict) -> dict:
    """Each lot judge's escapes and false rejects as counts (``lot_<judge>_<escape|false_reject>_<k|n>``; NaN where
    the run predates it): the study pools them over seeds for its intervals."""
    out = {}
    for judge, (source, *path) in LOT_JUDGES:
        node = lot if source == "evaluation" else baseline
        for key in path:
            node = node.get(key) or {} if isinstance(node, dict) else {}
        for what in ("escape", "false_reject"):
            r = node.get(what) or {}
            for c in ("k", "n"):
                out[f"lot_{judge}_{what}_{c}"] = r.get(c) if r.get("rate") is not None else None
    return out


def pretrained_figures_of(record: dict, read=None) -> dict:
    """:func:`figures_of` plus the test macro-F1 over the defect classes and the token-norm look."""
    read = read or json_at
    f = figures_of(record, read)
    rev = record.get("rev")
    test = ((read(rev, "reports/evaluation.json") if rev else None) or {}).get("test", {}).get("argmax", {})
    f1 = [v.get("f1") for c, v in test.get("per_class", {}).items() if c != "passed" and v.get("f1") is not None]
    f["defect_macro_f1"] = float(np.mean(f1)) if f1 else float("nan")
    norms = ((read(rev, "reports/attention.json") if rev else None) or {}).get("token_norms") or {}
    for key in ("max_over_median", "high_norm_share", "high_norm_in_mask", "mask_patch_share"):
        f[key] = float(norms[key]) if norms.get(key) is not None else float("nan")
    return f


def bytes_at(rev: str, path: str) -> bytes | None:
    """A file at ``rev``: from git, or from the local DVC cache for a cached output; None if neither has it."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
    if proc.returncode == 0:
        return proc.stdout
    try:
        import dvc.api

        return dvc.api.read(path, rev=rev, mode="rb")
    except Exception:  # not tracked at that revision, or not in the local cache
        return None



def record_run(path, plans: list[str], seeds: int, timing: dict) -> None:
    """Keep what a `study run` did (its plans, base overrides, wall times) beside the report, one entry per
    set of plans: the report names the overrides and the README quotes the times."""
    path = Path(path)
    try:
        runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    except (OSError, ValueError, AttributeError):
        runs = []
    entry = {"plans": plans, "seeds": seeds, **timing}
    runs = [r for r in runs if isinstance(r, dict) and r.get("plans") != plans] + [entry]
    write_text(path, json.dumps({"runs": runs}, indent=1) + "\n")


def recorded_overrides(path) -> dict:
    """The base overrides (``--set``) of every recorded `study run`, merged: what the report names."""
    from pathlib import Path

    try:
        runs = json.loads(Path(path).read_text()).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for r in runs:
        out.update(r.get("set") or {} if isinstance(r, dict) else {})
    return out

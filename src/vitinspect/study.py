"""`make study`: the source's five findings as `dvc exp` runs, and a report with their numbers.

    python -m vitinspect.study run      # queue the experiments, run them, write the report
    python -m vitinspect.study report   # (re)write the report from the experiments already run

The plan is a baseline (the default params) repeated over several training seeds, whose spread
decides which differences are real, plus one run for every other setting. Experiments are named
``study-<setting>-s<seed>``; the report reads them back with ``dvc exp show --json`` and the
committed files of each experiment (``git show <rev>:<path>``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitinspect.cli import run_command
from vitinspect.errors import VitinspectError
from vitinspect.review import at_revision

PREFIX = "study-"
F6_TARGETS = ("evaluate", "baseline")
# What F1-F6 read: every other plan reproduces these (and what they need), not the inspection bundle.
STUDY_TARGETS = ("evaluate", "attention", "audit", "baseline")
# The toy plan reports F1, F6 and the all-runs table (accuracy, F1, recall, relevance mass): no audit.
TOY_TARGETS = ("evaluate", "attention", "baseline")
F6_SETTINGS = {"ratio0.2": {"data.passed_ratio": 0.2}, "n1000": {"data.n_images": 1000}}
PEER_METRICS, PEER_REPORT, VIT_PREDICTIONS, PEER_RECORDS = (
    "metrics/baseline.json", "reports/baseline.json", "plots/predictions.csv", "plots/baseline_confusion.json")
BIG = {"model.hidden_size": 160, "model.layers": 5, "model.heads": 5, "model.mlp_size": 640}  # ~1.5M parameters, ~10x


@dataclass(frozen=True)
class Experiment:
    setting: str  # e.g. "base", "epochs5"
    seed: int
    overrides: dict = field(default_factory=dict)
    targets: tuple[str, ...] = ()  # stages to reproduce (and what they need); () means the whole pipeline

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.setting}-s{self.seed}"


# One run each (seed 0) beside the baseline; the names are what `dvc exp show` lists.
SETTINGS = {
    "epochs5": {"train.epochs": 5},
    "ratio0.05": {"data.passed_ratio": 0.05},
    "ratio0.1": {"data.passed_ratio": 0.1},
    "ratio0.2": {"data.passed_ratio": 0.2},
    "raw": {"train.input": "raw"},
    "head": {"finetune.strategy": "head"},
    "last_blocks": {"finetune.strategy": "last_blocks"},
    "lora": {"finetune.strategy": "lora"},
    "big": BIG,
    "n1000": F6_SETTINGS["n1000"],
}
PRETRAIN = {"model.source": "pretrain"}  # the pretrain stage's MAE encoder as the starting point
FRACTIONS = (0.1, 0.3)  # label efficiency: shares of the labelled training parts


def plan(kind: str = "full", seeds: int = 3, pretrained: str | None = None) -> list[Experiment]:
    """The experiments: baseline x seeds, one run for every other setting (seed 0). The toy plan is the
    baseline and the epochs setting once each (the end-to-end test's plan)."""
    if kind == "toy":
        return [Experiment("base", 0, {}, TOY_TARGETS), Experiment("epochs5", 0, SETTINGS["epochs5"], TOY_TARGETS)]
    if kind == "f6":  # F6 alone: the ViT against the RT+SVM peer on the default data, at ratio 0.2, and with few labels
        exps = [Experiment("base", s, {"train.seed": s}) for s in range(seeds)]
        exps += [Experiment("ratio0.2", 0, {"train.seed": 0, **F6_SETTINGS["ratio0.2"]})]
        exps += [Experiment("n1000", s, {"train.seed": s, **F6_SETTINGS["n1000"]}) for s in range(seeds)]
        return [Experiment(e.setting, e.seed, e.overrides, F6_TARGETS) for e in exps]  # no attention or audit needed
    if kind == "pretrain":
        return pretrain_plan(seeds)
    settings = dict(SETTINGS)
    if pretrained:
        settings["pretrained"] = {"model.source": "pretrained", "model.name_or_path": pretrained}
    exps = [Experiment("base", s, {"train.seed": s}, STUDY_TARGETS) for s in range(seeds)]
    return exps + [Experiment(k, 0, {"train.seed": 0, **v}, STUDY_TARGETS) for k, v in settings.items()]


PT_TARGETS = ("evaluate", "attention", "audit")  # what the pretrained-start sections read (no bundle, no peer)


def pretrain_plan(seeds: int = 2) -> list[Experiment]:
    """F4 and F5 asked again of a pretrained start (``pt-*``), beside the from-scratch runs they need.

    Head-only from scratch and from the pretrained start, and each strategy from the pretrained
    start, run with ``seeds`` training seeds; the scratch baseline, label efficiency and the larger
    model once. Every ``pt-*`` run of the small model shares one pretraining (same ``pretrain.*``:
    DVC's run cache restores it); the larger model has its own. Ordered so that a queue cut short
    has answered the most: the pretraining and full fine-tuning first, then the head-only pairs
    (the done-when comparison), the other strategies, label efficiency, the larger model last.
    """
    def pt(**o):
        return {**PRETRAIN, **o}

    def runs(setting, overrides):
        return [(setting, s, {"train.seed": s, **overrides}) for s in range(seeds)]

    head = [r for pair in zip(runs("head", {"finetune.strategy": "head"}), runs("pt-head", pt(**{"finetune.strategy": "head"})))
            for r in pair]
    frac = [(f"{p}frac{f}", 0, {"train.seed": 0, **(PRETRAIN if p else {}), "train.label_fraction": f})
            for f in FRACTIONS for p in ("", "pt-")]
    order = [("pt-full", 0, pt(**{"train.seed": 0})), *head, ("base", 0, {"train.seed": 0}),
             *runs("pt-last_blocks", pt(**{"finetune.strategy": "last_blocks"})), *runs("pt-lora", pt(**{"finetune.strategy": "lora"})),
             *[r for r in runs("pt-full", pt()) if r[1] > 0], *frac, ("pt-big", 0, pt(**{"train.seed": 0, **BIG}))]
    return [Experiment(name, seed, overrides, PT_TARGETS) for name, seed, overrides in order]


# --------------------------------------------------------------------------- running


def _dvc(*args: str, check: bool = True) -> str:
    return run_command(["dvc", *args], check=check)


def run_plan(exps: list[Experiment], extra: dict, timeout_s: float) -> None:
    """Queue every experiment (dropping earlier ones of the same name) and run the queue, one at a time."""
    for e in exps:
        _dvc("exp", "remove", e.name, check=False)
        sets = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in {**e.overrides, **extra}.items()]
        _dvc("exp", "run", "--queue", "-n", e.name, *[a for s in sets for a in ("-S", s)], *e.targets)
    _dvc("queue", "start", "-j", "1")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = queue_status()
        if not {"Queued", "Running"} & set(status.values()):
            break
        time.sleep(3)
    else:
        raise VitinspectError(f"the study queue did not finish within {timeout_s:.0f} s (dvc queue status)")
    failed = [name for name, state in status.items() if state == "Failed" and name in {e.name for e in exps}]
    if failed:
        raise VitinspectError(f"{len(failed)} study experiment(s) failed; see dvc queue logs {failed[0]}")


def queue_status() -> dict[str, str]:
    """experiment name -> Queued / Running / Success / Failed ...: what `dvc queue status` lists, asked of
    DVC's API in this process (a poll every few seconds; a CLI start each time would cost a core-second)."""
    from dvc.repo import Repo

    with Repo() as repo:
        return {e.get("name") or e.get("rev", "?"): e["status"] for e in repo.experiments.celery_queue.status()}


# --------------------------------------------------------------------------- collecting


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


def figures_of(record: dict, read=at_revision) -> dict:
    """The figures each finding needs, from one experiment (NaN where absent).

    The headline comes from its metrics; the details (per-class figures at argmax on the test split,
    attention scores per input) from the report files committed with it (``read(rev, path)``).
    """
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
    return {k: float(v) if v is not None else nan for k, v in f.items()}


# --------------------------------------------------------------------------- the report


def _fmt(x, pct=False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3f}")


def spread(values: list[float]) -> float:
    """Half the range of the baseline's seeds: a difference beyond it is called real."""
    v = [x for x in values if not np.isnan(x)]
    return (max(v) - min(v)) / 2 if len(v) > 1 else float("nan")


def judge(base_mean: float, value: float, half_range: float) -> str:
    if np.isnan(half_range):
        return "no spread measured (one seed): not judged"
    d = value - base_mean
    return f"{'real' if abs(d) > max(half_range, 1e-9) else 'within the seed spread'} (difference {d:+.3f}, spread ±{half_range:.3f})"


class Study:
    """The study's experiments grouped by setting, with the figures of each: what every finding reads."""

    def __init__(self, records: dict[str, dict], figure_dir: Path, rel: str):
        self.records, self.figure_dir, self.rel = records, figure_dir, rel
        self.figs = {name: figures_of(r) for name, r in records.items()}
        self.by_setting: dict[str, list[str]] = {}
        for name in sorted(records):
            self.by_setting.setdefault(name[len(PREFIX):].rsplit("-s", 1)[0], []).append(name)

    def has(self, *settings: str) -> bool:
        return all(self.by_setting.get(s) for s in settings)

    def values(self, setting: str, key: str) -> list[float]:
        return [self.figs[n][key] for n in self.by_setting.get(setting, [])]

    def mean(self, setting: str, key: str) -> float:
        v = [x for x in self.values(setting, key) if not np.isnan(x)]
        return float(np.mean(v)) if v else float("nan")

    def first(self, setting: str) -> dict:
        """The record of the setting's first run (its params, its rev)."""
        return self.records[self.by_setting[setting][0]]

    def param(self, setting: str, section: str, key: str):
        return self.first(setting)["params"].get(section, {}).get(key)

    def judge(self, setting: str, key: str) -> str:
        """``setting`` against the baseline on ``key``, judged by the baseline's seed spread."""
        return judge(self.mean("base", key), self.mean(setting, key), spread(self.values("base", key)))

    def figure(self, fig, name: str) -> str:
        """Save a figure beside the report; return its markdown link path."""
        from vitinspect.storage import save_figure

        save_figure(fig, self.figure_dir / name)
        return f"{self.rel}/{name}"


def f1_epochs(st: Study) -> list[str]:
    from vitinspect.figures import confusion_pair

    lines = ["## F1: does 10 epochs beat 5?", ""]
    if not st.has("base", "epochs5"):
        return lines + ["Not run in this plan.", ""]
    epochs = {s: st.param(s, "train", "epochs") for s in ("base", "epochs5")}
    rows = [(f"{epochs['base']} epochs (baseline)", "base"), (f"{epochs['epochs5']} epochs", "epochs5")]
    lines += ["| run | macro-F1 | X<->Y confusion | accuracy |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {_fmt(st.mean(s, 'macro_f1'))} | {_fmt(st.mean(s, 'xy_confusion'), True)} | {_fmt(st.mean(s, 'accuracy'))} |" for label, s in rows]
    lines += ["", f"macro-F1 with {epochs['epochs5']} epochs against {epochs['base']}: {st.judge('epochs5', 'macro_f1')}. "
              f"The source found 10 epochs better than 5; here the {epochs['base']}-epoch baseline scores {_fmt(st.mean('base', 'macro_f1'))} "
              f"and {epochs['epochs5']} epochs {_fmt(st.mean('epochs5', 'macro_f1'))}.", ""]
    cm10 = at_revision(st.first("base")["rev"], "metrics/confusion_matrix.json")
    cm5 = at_revision(st.first("epochs5")["rev"], "metrics/confusion_matrix.json")
    if cm10 and cm5:
        link = st.figure(confusion_pair(cm5, cm10, f"{epochs['epochs5']} epochs", f"{epochs['base']} epochs"), "f1_confusion.png")
        lines += [f"![{epochs['epochs5']} epochs (left) vs {epochs['base']} epochs (right)]({link})", ""]
    return lines


def f2_passed_ratio(st: Study) -> list[str]:
    from vitinspect.figures import study_panels

    lines = ["## F2: how much does a rare passed class hurt?", ""]
    base_ratio = st.param("base", "data", "passed_ratio") if st.has("base") else None
    ratios = ([(float(base_ratio), "base")] if base_ratio is not None else []) + [(float(s[5:]), s) for s in st.by_setting if s.startswith("ratio")]
    ratios = sorted((r, s) for r, s in ratios if st.has(s))
    if len(ratios) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| passed ratio | passed recall | false-reject rate | escape rate | macro-F1 |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r:g} | {_fmt(st.mean(s, 'passed_recall'))} | {_fmt(st.mean(s, 'false_reject_rate'), True)} | "
              f"{_fmt(st.mean(s, 'escape_rate'), True)} | {_fmt(st.mean(s, 'macro_f1'))} |" for r, s in ratios]
    series = {k: [st.values(s, k) for _, s in ratios] for k in ("passed_recall", "false_reject_rate", "escape_rate")}
    link = st.figure(study_panels([r for r, _ in ratios], series, "passed ratio", percent={"false_reject_rate", "escape_rate"}),
                     "f2_ratio.png")
    top = ratios[-1][1]
    lines += ["", f"![passed recall, false-reject and escape rate against the passed ratio]({link})", "",
              f"Passed recall goes from {_fmt(st.mean('base', 'passed_recall'))} at {ratios[0][0]:g} to {_fmt(st.mean(top, 'passed_recall'))} at "
              f"{ratios[-1][0]:g}: {st.judge(top, 'passed_recall')}. "
              "The source reported that a rare passed class hurts and that 1/5 fixes it.", ""]
    return lines


def f3_raw_vs_nsoartc(st: Study) -> list[str]:
    lines = ["## F3: are the maps more sensible on raw images or on NSOARTC?", ""]
    if not st.has("base", "raw"):
        return lines + ["Not run in this plan.", ""]
    lines += ["| trained on | map on | relevance mass | pointing game | baseline |", "|---|---|---:|---:|---:|"]
    for label, s in (("nsoartc", "base"), ("raw", "raw")):
        for shown in ("nsoartc", "raw"):
            lines.append(f"| {label} | {shown}{'' if shown == label else ' (out of distribution)'} | "
                         f"{_fmt(st.mean(s, f'relevance_mass_{shown}'))} | {_fmt(st.mean(s, f'pointing_game_{shown}'))} | {_fmt(st.mean(s, 'baseline'))} |")
    lines += ["", f"Gradient-weighted attention, each model on its own input: relevance mass {_fmt(st.mean('base', 'relevance_mass'))} "
              f"(NSOARTC) vs {_fmt(st.mean('raw', 'relevance_mass'))} (raw), against a uniform map's {_fmt(st.mean('base', 'baseline'))}; "
              f"raw against NSOARTC: {st.judge('raw', 'relevance_mass')}. "
              f"Accuracy {_fmt(st.mean('base', 'accuracy'))} (NSOARTC) vs {_fmt(st.mean('raw', 'accuracy'))} (raw). "
              "The source found the NSOARTC maps more sensible; maps of a model shown the representation it was not "
              "trained on stay near the baseline.", ""]
    return lines


def f4_strategies(st: Study) -> list[str]:
    lines = ["## F4: how much does fine-tuning rewrite?", ""]
    strategies = [(label, s) for label, s in (("full", "base"), ("head", "head"), ("last_blocks", "last_blocks"), ("lora", "lora")) if st.has(s)]
    if len(strategies) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| strategy | trainable % | accuracy | macro-F1 | mean relative change per block |", "|---|---:|---:|---:|---|"]
    for label, s in strategies:
        audit = at_revision(st.first(s)["rev"], "reports/audit.json") or {}
        changes = audit.get("relative_change_by_group", {})
        per_block = ", ".join(f"{g}: {v['mean_relative_change']:.2f}" for g, v in changes.items()
                              if g.endswith(".attention") and v.get("mean_relative_change") is not None)
        lines.append(f"| {label} | {_fmt(st.mean(s, 'trainable_pct'))} | {_fmt(st.mean(s, 'accuracy'))} | {_fmt(st.mean(s, 'macro_f1'))} | {per_block or 'n/a'} |")
    said = "; ".join(f"{label}: {_fmt(st.mean(s, 'trainable_pct'))}% trainable, accuracy {_fmt(st.mean(s, 'accuracy'))}" for label, s in strategies)
    scratch = st.param(strategies[0][1], "model", "source") == "scratch"
    lines += ["", f"{said}. Full fine-tuning makes 100% of the parameters trainable by construction, as the source said of ViT-Large, "
              "and every block moves (relative change above); the frozen strategies leave their frozen blocks at exactly 0."
              + (" Here the model starts from random weights, so freezing part of it freezes noise: the partial strategies "
                 "lose accuracy, as expected. They are meant for a pretrained checkpoint (`--pretrained PATH`), where the "
                 "source's question (how much of a big pretrained ViT must change) applies." if scratch else ""), ""]
    return lines


def f5_model_size(st: Study) -> list[str]:
    lines = ["## F5: do small and big ViTs look at different things?", ""]
    sizes = [(label, s) for label, s in (("small (default)", "base"), ("~10x larger", "big"), ("pretrained", "pretrained")) if st.has(s)]
    if len(sizes) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| model | parameters | relevance mass | pointing game | accuracy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {_fmt(st.mean(s, 'parameters'))} | {_fmt(st.mean(s, 'relevance_mass'))} | {_fmt(st.mean(s, 'pointing_game'))} | "
              f"{_fmt(st.mean(s, 'accuracy'))} |" for label, s in sizes]
    verdict_big = st.judge("big", "relevance_mass")
    agrees = "agrees with" if st.mean("big", "relevance_mass") < st.mean("base", "relevance_mass") and verdict_big.startswith("real") else "does not reproduce"
    lines += ["", f"Relevance mass, larger model against the default: {verdict_big}; pointing game "
              f"{_fmt(st.mean('big', 'pointing_game'))} vs {_fmt(st.mean('base', 'pointing_game'))}. "
              f"The source saw clean maps from a ~160k-parameter ViT and background-drawn maps from a large pretrained one; "
              f"this {agrees} that at ~10x from scratch (no pretraining, so none of the high-norm background tokens "
              "large pretrained ViTs grow).", ""]
    return lines


def all_runs(st: Study) -> list[str]:
    lines = ["## All runs", "", "| experiment | rev | accuracy | macro-F1 | passed recall | relevance mass |", "|---|---|---:|---:|---:|---:|"]
    return lines + [f"| {n} | {st.records[n]['rev'][:7]} | {_fmt(st.figs[n]['accuracy'])} | {_fmt(st.figs[n]['macro_f1'])} | "
                    f"{_fmt(st.figs[n]['passed_recall'])} | {_fmt(st.figs[n]['relevance_mass'])} |" for n in sorted(st.records)]


# --------------------------------------------------------------------------- F6: the classical peer


def paired_accuracy(vit_pred, vit_true, peer_pred, peer_true, resamples: int = 2000) -> dict | None:
    """The ViT minus the peer on the same test parts: accuracy and macro-F1, each with a 95 % interval.

    Accuracy: per part d = [ViT right] - [peer right]; mean +- 1.96 sd / sqrt(n) (paired, normal
    approximation), with the counts of parts only one of them gets right. Macro-F1: a paired bootstrap
    over the parts (``resamples`` draws, seed 0, percentile interval); it carries the rare passed class.
    None when the two lists are not the same parts.
    """
    vit_true, peer_true = np.asarray(vit_true), np.asarray(peer_true)
    vit_pred, peer_pred = np.asarray(vit_pred), np.asarray(peer_pred)
    if len(vit_true) < 2 or len(vit_true) != len(peer_true) or (vit_true != peer_true).any():
        return None
    a, b = (vit_pred == vit_true).astype(float), (peer_pred == peer_true).astype(float)
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    labels = sorted(set(vit_true) | set(vit_pred) | set(peer_pred))
    code = {c: i for i, c in enumerate(labels)}
    t, pv, pp = (np.array([code[x] for x in arr]) for arr in (vit_true, vit_pred, peer_pred))
    k = len(labels)

    def macro_f1(truth, pred):  # sklearn's macro-F1 (zero_division=0) over all labels, by counts
        tp = np.bincount(truth[truth == pred], minlength=k)
        denom = np.bincount(truth, minlength=k) + np.bincount(pred, minlength=k)
        return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))

    def f1_diff(idx):
        return macro_f1(t[idx], pv[idx]) - macro_f1(t[idx], pp[idx])

    rng = np.random.default_rng(0)
    boot = [f1_diff(rng.integers(0, len(d), len(d))) for _ in range(resamples)]
    return {"n": len(d), "diff": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half),
            "only_vit": int(((a == 1) & (b == 0)).sum()), "only_peer": int(((a == 0) & (b == 1)).sum()),
            "f1_diff": float(f1_diff(np.arange(len(d)))), "f1_low": float(np.percentile(boot, 2.5)),
            "f1_high": float(np.percentile(boot, 97.5))}


def _peer_of(rev: str) -> dict:
    """The peer's figures and the per-part predictions of both machines in one experiment."""
    import io

    import pandas as pd

    out = {"svm": at_revision(rev, PEER_METRICS), "report": at_revision(rev, PEER_REPORT) or {}}
    records = at_revision(rev, PEER_RECORDS)
    proc = run_command(["git", "show", f"{rev}:{VIT_PREDICTIONS}"], check=False)
    if records and proc:
        table = pd.read_csv(io.StringIO(proc))
        out["paired"] = paired_accuracy(table["predicted"], table["label"], [r["predicted"] for r in records], [r["actual"] for r in records])
    return out


def f6_section(records: dict[str, dict], by_setting: dict[str, list[str]]) -> list[str]:
    """## F6: does the ViT beat the RT+SVM machine? Per setting, every seed, with a paired interval."""
    lines = ["## F6: does the ViT beat the RT+SVM machine?", ""]
    settings = [(label, s) for label, s in (("default data", "base"), ("passed ratio 0.2", "ratio0.2"), ("n_images 1000", "n1000"))
                if by_setting.get(s)]
    peers = {n: _peer_of(records[n]["rev"]) for _, s in settings for n in by_setting[s]}
    if not settings or not any(p["svm"] for p in peers.values()):
        return lines + ["Not run in this plan (or its experiments predate the baseline stage).", ""]
    nan = float("nan")

    def get(m, *keys):
        for k in keys:
            m = (m or {}).get(k) if isinstance(m, dict) else None
        return nan if m is None else float(m)

    def stat(values):
        v = [x for x in values if not np.isnan(x)]
        if not v:
            return "n/a"
        return f"{np.mean(v):.3f}" + (f" ±{(max(v) - min(v)) / 2:.3f}" if len(v) > 1 else "")

    lines += ["QEU's machine: Double-Eye RT features (β and Y2 of each side view against the centre view, one RT window per "
              "terminal cell, z-scored by the passed training parts) fed to an RBF SVM; a logistic regression on the same features "
              "beside it. Both read the same parts as the ViT and are scored on the same test parts with the same function. "
              "Figures are the mean over the training seeds ±half their range (the SVM does not depend on the ViT's seed). "
              "QEU reported 92.6–94.3 % accuracy for its machine.", "",
              "| data | seeds | ViT accuracy | SVM accuracy | logistic accuracy | ViT macro-F1 | SVM macro-F1 | ViT escape | SVM escape | ViT false-reject | SVM false-reject | ViT passed recall | SVM passed recall |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for label, s in settings:
        names = by_setting[s]
        vit = [records[n]["metrics"].get("metrics/eval.json", {}) for n in names]
        svm = [peers[n]["svm"] for n in names]
        lr = [(peers[n]["report"].get("logistic") or {}).get("test") for n in names]
        col = lambda ms, *k: stat([get(m, *k) for m in ms])  # noqa: E731
        lines.append(f"| {label} | {len(names)} | {col(vit, 'accuracy')} | {col(svm, 'accuracy')} | {col(lr, 'accuracy')} | "
                     f"{col(vit, 'macro_f1')} | {col(svm, 'macro_f1')} | {col(vit, 'escape_rate')} | {col(svm, 'escape_rate')} | "
                     f"{col(vit, 'false_reject_rate')} | {col(svm, 'false_reject_rate')} | "
                     f"{col(vit, 'per_class', 'passed', 'recall')} | {col(svm, 'per_class', 'passed', 'recall')} |")
        paired = [(n, peers[n]["paired"]) for n in names if peers[n].get("paired")]
        for metric, key in (("accuracy", ""), ("macro-F1", "f1_")):
            if not paired:
                continue
            wins = sum(p[f"{key}low"] > 0 for _, p in paired)
            losses = sum(p[f"{key}high"] < 0 for _, p in paired)
            detail = "; ".join(f"{n.rsplit('-', 1)[1]}: {p[f'{key}diff']:+.3f} [{p[f'{key}low']:+.3f}, {p[f'{key}high']:+.3f}]"
                               + (f" ({p['only_vit']} parts only the ViT gets right, {p['only_peer']} only the SVM)" if not key else "")
                               for n, p in paired)
            verdicts.append((f"{label}, {metric}", wins, losses, len(paired), detail))
    lines += ["", "The ViT minus the SVM on the same test parts, per seed, with a 95 % interval (accuracy: paired normal "
              "approximation; macro-F1: paired bootstrap over the parts):", ""]
    lines += [f"- **{label}**: the ViT is ahead beyond the interval in {w} of {n} seeds, behind in {l_} of {n}. {detail}."
              for label, w, l_, n, detail in verdicts]
    return lines + ["", f6_answer(verdicts), ""]


def f6_answer(verdicts: list[tuple]) -> str:
    """One paragraph that answers F6 from the per-seed paired intervals (label, wins, losses, n, detail)."""
    parts = []
    for label, wins, losses, n, _ in verdicts:
        if wins == n:
            parts.append(f"on {label} yes, in every seed ({wins} of {n})")
        elif losses == n:
            parts.append(f"on {label} no: the SVM is ahead in every seed ({losses} of {n})")
        elif wins > losses:
            parts.append(f"on {label} mostly: ahead in {wins} of {n} seeds, behind in {losses}, the rest within the interval")
        elif losses > wins:
            parts.append(f"on {label} mostly not: behind in {losses} of {n} seeds, ahead in {wins}, the rest within the interval")
        else:
            parts.append(f"on {label} not clearly: ahead in {wins} and behind in {losses} of {n} seeds beyond the interval")
    if not parts:
        return "**Answer.** Not measured: no experiment holds both machines' per-part predictions."
    return ("**Answer: does the ViT beat the RT+SVM machine?** " + "; ".join(parts) + ". A seed counts only when the 95 % "
            "interval of the difference on the same test parts excludes zero.")


def splice_section(text: str, section: list[str], heading: str, before: str = "## All runs") -> str:
    """Replace the ``heading`` section of a markdown report by ``section``, or insert it before ``before``.

    Lets one finding be rewritten from its own experiments while the others' sections stay as they are.
    """
    lines = text.rstrip("\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    mine = [i for i in starts if lines[i].startswith(heading)]
    if mine:
        i = mine[0]
        end = next((j for j in starts if j > i), len(lines))
    else:
        i = end = next((j for j in starts if lines[j].startswith(before)), len(lines))
    return "\n".join(lines[:i] + section + lines[end:]) + "\n"


def f6_peer(st: Study) -> list[str]:
    return f6_section(st.records, st.by_setting)


# The report's sections, in order: each finding reads the study and returns its markdown lines.
FINDINGS = [f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f4_strategies, f5_model_size, f6_peer]


def pretrained_start(st: Study) -> list[str]:
    """F4, F5 and label efficiency from the MAE-pretrained start (issue 17), between markers."""
    return pretrained_sections(st.records, st.figure_dir, st.rel)


def build_report(records: dict[str, dict], figure_dir: Path, rel: str) -> str:
    """reports/study.md as text; figures are written into figure_dir (linked as rel/<name>)."""
    st = Study(records, figure_dir, rel)
    lines = ["# The study: the source's findings, measured", "",
             f"{len(records)} experiments (`dvc exp show` names `{PREFIX}*`); the baseline is the default params, "
             f"run with {len(st.by_setting.get('base', []))} training seed(s). A difference is called real only when it exceeds half the range "
             "of the baseline's seeds (its spread); settings other than the baseline ran once.", ""]
    for finding in [*FINDINGS, pretrained_start]:
        lines += finding(st)
    return "\n".join(lines + all_runs(st)) + "\n"


# --------------------------------------------------------------------------- a pretrained start (issue 17)

PT_BEGIN, PT_END = "<!-- pretrained-start sections: begin -->", "<!-- pretrained-start sections: end -->"


class Runs:
    """The study runs by setting, with the figures the pretrained-start sections need."""

    def __init__(self, records: dict[str, dict]):
        self.records = records
        self.figs = {n: pretrained_figures_of(r) for n, r in records.items()}
        self.by_setting: dict[str, list[str]] = {}
        for name in sorted(records):
            self.by_setting.setdefault(name[len(PREFIX):].rsplit("-s", 1)[0], []).append(name)

    def has(self, *settings: str) -> bool:
        return all(self.by_setting.get(s) for s in settings)

    def values(self, setting: str, key: str) -> list[float]:
        return [self.figs[n][key] for n in self.by_setting.get(setting, []) if not np.isnan(self.figs[n][key])]

    def mean(self, setting: str, key: str) -> float:
        v = self.values(setting, key)
        return float(np.mean(v)) if v else float("nan")

    def cell(self, setting: str, key: str, pct: bool = False) -> str:
        """The mean, with the half-range and the count when the setting ran with several seeds."""
        v = self.values(setting, key)
        if len(v) > 1:
            return f"{_fmt(float(np.mean(v)), pct)} ± {_fmt(spread(v), pct)} (n={len(v)})"
        return _fmt(float(np.mean(v)) if v else float("nan"), pct)

    def json_at(self, setting: str, path: str):
        names = self.by_setting.get(setting)
        return at_revision(self.records[names[0]]["rev"], path) if names else None

    def param(self, setting: str, section: str, key: str):
        names = self.by_setting.get(setting)
        return self.records[names[0]]["params"].get(section, {}).get(key) if names else None


def pretrained_figures_of(record: dict, read=None) -> dict:
    """:func:`figures_of` plus the test macro-F1 over the defect classes and the token-norm look."""
    read = read or at_revision
    f = figures_of(record, read)
    rev = record.get("rev")
    test = ((read(rev, "reports/evaluation.json") if rev else None) or {}).get("test", {}).get("argmax", {})
    f1 = [v.get("f1") for c, v in test.get("per_class", {}).items() if c != "passed" and v.get("f1") is not None]
    f["defect_macro_f1"] = float(np.mean(f1)) if f1 else float("nan")
    norms = ((read(rev, "reports/attention.json") if rev else None) or {}).get("token_norms") or {}
    for key in ("max_over_median", "high_norm_share", "high_norm_in_mask", "mask_patch_share"):
        f[key] = float(norms[key]) if norms.get(key) is not None else float("nan")
    return f


def _block_change(audit: dict | None) -> str:
    """'b0 0.12/0.30, ...': mean relative change of each block's attention / MLP."""
    groups = (audit or {}).get("relative_change_by_group", {})
    blocks = sorted({g.split(".")[0] for g in groups if g.startswith("block_")})
    cells = []
    for b in blocks:
        parts = [groups.get(f"{b}.{p}", {}).get("mean_relative_change") for p in ("attention", "mlp")]
        cells.append(f"b{int(b[6:])} " + "/".join("n/a" if v is None else f"{v:.2f}" for v in parts))
    return ", ".join(cells) or "n/a"


def _mean_block_change(audit: dict | None) -> float:
    groups = (audit or {}).get("relative_change_by_group", {})
    v = [g.get("mean_relative_change") for k, g in groups.items() if k.startswith("block_")]
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else float("nan")


def _bytes_at(rev: str, path: str) -> bytes | None:
    """A file at ``rev``: from git, or from the local DVC cache for a cached output; None if neither has it."""
    import subprocess

    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
    if proc.returncode == 0:
        return proc.stdout
    try:
        import dvc.api

        return dvc.api.read(path, rev=rev, mode="rb")
    except Exception:  # not tracked at that revision, or not in the local cache
        return None


def _json_bytes_at(rev: str, path: str):
    data = _bytes_at(rev, path)
    return json.loads(data) if data else None


def section_pretraining(runs: Runs, figure_dir: Path, rel: str) -> list[str]:
    """What the MAE pretraining itself did: reconstruction loss per epoch and its cost, for each pretraining."""
    lines = ["## The pretraining (masked autoencoder on unlabeled parts)", ""]
    rows, figures = [], []
    for label, s in (("small", "pt-full"), ("small, norm_pix_loss", "pt-normpix-head"), ("~10x larger", "pt-big")):
        if not runs.has(s):
            continue
        rev = runs.records[runs.by_setting[s][0]]["rev"]
        curve = _bytes_at(rev, "dvclive/pretrain/plots/metrics/reconstruction_loss.tsv") or b""
        losses = [float(line.split("\t")[1]) for line in curve.decode().splitlines()[1:] if "\t" in line]
        q = runs.records[runs.by_setting[s][0]]["params"].get("pretrain", {})
        shown = ", ".join(f"{v:.4f}" for v in losses[:3]) + (f", ..., {losses[-1]:.4f}" if len(losses) > 3 else "")
        rows.append(f"| {label} | {q.get('n_parts')} {q.get('input')} parts x {q.get('epochs')} epochs, mask {q.get('mask_ratio')} | "
                    f"{shown or 'n/a'} |")
        png = _bytes_at(rev, "plots/pretrain.png")
        if png:
            name = f"pt_reconstruction_{s}.png"
            (figure_dir / name).write_bytes(png)
            figures.append(f"![{label}: masked inputs and reconstructions]({rel}/{name})")
    if not rows:
        return lines + ["Not run in this plan.", ""]
    return lines + ["| encoder | pretraining | reconstruction loss per epoch |", "|---|---|---|", *rows, "",
                    "`ViTMAEForPreTraining` as in transformers' `run_mae` example, on parts rendered from their own seed "
                    "(none of them in the labelled splits), in the representation `train` uses; the loss is the mean squared "
                    "error of the masked patches (normalised pixels, or per-patch normalised with norm_pix_loss), with the "
                    "sin-cos position tables set (transformers 5 leaves them at zero, and an MAE without positions can only "
                    "predict the mean pixel). On NSOARTC composites the loss cannot fall far below the pixel variance (about "
                    "0.050): the composite is a z-scored RT residual, spatially white beyond the RT window, so the masked "
                    "patches are mostly unpredictable noise and the reconstructions look grey except for the connector "
                    "body; README gives the floor. Its speed is a log (logs/pretrain_run.json), not an experiment output: `make bench` "
                    "prints it beside fine-tuning's.", "", *figures, ""]


def section_f4_pretrained(runs: Runs) -> list[str]:
    """F4 again, from the MAE encoder: what each strategy scores and how far each block moved."""
    lines = ["## F4 from a pretrained start: does fine-tuning still rewrite everything?", ""]
    rows = [("full", "scratch", "base"), ("head", "scratch", "head"), ("full", "pretrained", "pt-full"),
            ("head (linear probe)", "pretrained", "pt-head"), ("head (linear probe)", "pretrained, norm_pix_loss", "pt-normpix-head"),
            ("last_blocks", "pretrained", "pt-last_blocks"), ("lora", "pretrained", "pt-lora")]
    rows = [r for r in rows if runs.has(r[2])]
    if not runs.has("pt-head"):
        return lines + ["Not run in this plan.", ""]
    lines += ["| strategy | start | trainable % | accuracy | defect macro-F1 | passed recall | relative change per block (attention/MLP) |",
              "|---|---|---:|---:|---:|---:|---|"]
    for label, start, s in rows:
        lines.append(f"| {label} | {start} | {_fmt(runs.mean(s, 'trainable_pct'))} | {runs.cell(s, 'accuracy')} | "
                     f"{runs.cell(s, 'defect_macro_f1')} | {runs.cell(s, 'passed_recall')} | {_block_change(runs.json_at(s, 'reports/audit.json'))} |")
    lines.append("")
    sc = runs.values("head", "defect_macro_f1")
    for setting, what in (("pt-head", "the pretrained start"), ("pt-normpix-head", "the norm_pix_loss pretrained start")):
        lines += _probe_verdict(runs.values(setting, "defect_macro_f1"), sc, what)
    full_pt, full_sc = _mean_block_change(runs.json_at("pt-full", "reports/audit.json")), _mean_block_change(runs.json_at("base", "reports/audit.json"))
    if not np.isnan(full_pt):
        lines.append(f"Full fine-tuning from the pretrained start moves the blocks by {full_pt:.2f} on average (relative change "
                     f"‖W−W0‖/‖W0‖), against {_fmt(full_sc)} from scratch: "
                     + ("most of the network stays near its starting point" if full_pt < 0.3 else
                        "the network is still largely rewritten, so the pretrained start is not kept")
                     + (" (changes of hundreds or thousands mean the pretrained weights were near zero: the MAE had shrunk its "
                        "attention projections while it learnt to output the mean composite, so there was little to keep)"
                        if full_pt > 10 else "")
                     + f"; defect macro-F1 {_fmt(runs.mean('pt-full', 'defect_macro_f1'))} vs {_fmt(runs.mean('base', 'defect_macro_f1'))} from scratch. "
                     "The partial strategies (head, last_blocks, LoRA) keep the frozen blocks at exactly 0 by construction; what they "
                     "score shows how much of the task the pretrained features already carry.")
    return lines + [""]


def _probe_verdict(pt: list[float], sc: list[float], what: str) -> list[str]:
    """One paragraph: head-only from ``what`` against head-only from scratch, judged by the seed spread."""
    if not (pt and sc):
        return []
    diff = float(np.mean(pt) - np.mean(sc))
    if len(pt) < 2 or len(sc) < 2:
        return [f"**Head-only (linear probe) from {what}, one seed so far: not judged.** Defect macro-F1 {np.mean(pt):.3f} against "
                f"{np.mean(sc):.3f} from scratch (difference {diff:+.3f}); a verdict needs at least two training seeds of each.", ""]
    half = max(spread(pt) if len(pt) > 1 else 0.0, spread(sc) if len(sc) > 1 else 0.0)
    wins = sum(a > b for a in pt for b in sc)
    real = len(pt) > 1 and len(sc) > 1 and abs(diff) > half
    verdict = (f"{'beats' if diff > 0 else 'loses to'} head-only from scratch by more than the seed spread" if real
               else "does not differ from head-only from scratch by more than the seed spread")
    return [f"**Head-only (linear probe) from {what} {verdict}**: defect macro-F1 {np.mean(pt):.3f} "
                 f"(seeds {', '.join(f'{v:.3f}' for v in pt)}) against {np.mean(sc):.3f} (seeds {', '.join(f'{v:.3f}' for v in sc)}); "
                 f"difference {diff:+.3f}, larger seed half-range ±{half:.3f}; the pretrained probe is ahead in {wins} of "
                 f"{len(pt) * len(sc)} seed pairs. The seeds vary the head's initialisation and the shuffling; the pretraining "
                 "ran once (one `pretrain.seed`).", ""]


def section_label_efficiency(runs: Runs, figure_dir: Path, rel: str) -> list[str]:
    """Full fine-tuning from scratch and from the pretrained start on 10 %, 30 % and all labelled parts."""
    from vitinspect.figures import study_panels
    from vitinspect.storage import save_figure

    lines = ["## Label efficiency: does the pretrained start need fewer labelled parts?", ""]
    rows = [(f, f"frac{f}", f"pt-frac{f}") for f in FRACTIONS] + [(1.0, "base", "pt-full")]
    rows = [r for r in rows if runs.has(r[1], r[2])]
    if not rows:
        return lines + ["Not run in this plan.", ""]
    n_images = runs.param(rows[0][1], "data", "n_images") or 0
    share = (runs.records[runs.by_setting[rows[0][1]][0]]["params"].get("data", {}).get("split", {}) or {}).get("train", 0)
    lines += ["| labelled share | ≈ labelled parts | defect macro-F1 scratch | defect macro-F1 pretrained | accuracy scratch | accuracy pretrained | passed recall scratch / pretrained |",
              "|---:|---:|---:|---:|---:|---:|---|"]
    for f, sc, pt in rows:
        lines.append(f"| {f:g} | {round(n_images * share * f):,} | {_fmt(runs.mean(sc, 'defect_macro_f1'))} | {_fmt(runs.mean(pt, 'defect_macro_f1'))} | "
                     f"{_fmt(runs.mean(sc, 'accuracy'))} | {_fmt(runs.mean(pt, 'accuracy'))} | "
                     f"{_fmt(runs.mean(sc, 'passed_recall'))} / {_fmt(runs.mean(pt, 'passed_recall'))} |")
    series = {"scratch": [runs.mean(sc, "defect_macro_f1") for _, sc, _ in rows],
              "pretrained": [runs.mean(pt, "defect_macro_f1") for _, _, pt in rows]}
    panels = {"defect macro-F1, scratch": [runs.values(sc, "defect_macro_f1") for _, sc, _ in rows],
              "defect macro-F1, pretrained": [runs.values(pt, "defect_macro_f1") for _, _, pt in rows]}
    save_figure(study_panels([f for f, _, _ in rows], panels, "labelled share of the training parts"), figure_dir / "pt_label_efficiency.png")
    diffs = [series["pretrained"][i] - series["scratch"][i] for i in range(len(rows))]
    half = max([spread(runs.values(s, "defect_macro_f1")) for s in ("head", "pt-head") if len(runs.values(s, "defect_macro_f1")) > 1] or [float("nan")])
    ahead = sum(d > half for d in diffs) if not np.isnan(half) else 0
    lines += ["", f"![defect macro-F1 against the labelled share]({rel}/pt_label_efficiency.png)", "",
              f"Pretrained minus scratch, defect macro-F1: {', '.join(f'{d:+.3f} at {f:g}' for d, (f, _, _) in zip(diffs, rows))}. "
              f"Each share ran with one training seed; the only seed spread measured here is the head-only one (±{_fmt(half)}), and "
              f"the pretrained start is ahead by more than it at {ahead} of {len(rows)} shares. The subset is stratified by class "
              "(at least one part of each), so the rare passed class keeps a few parts even at 10 %.", ""]
    return lines


def section_f5_pretrained(runs: Runs) -> list[str]:
    """F5 again with both sizes pretrained: do the maps still land on the defect, and does the larger one grow high-norm tokens?"""
    lines = ["## F5 from a pretrained start: small vs ~10x larger, both pretrained", ""]
    rows = [(label, s) for label, s in (("small, scratch", "base"), ("small, pretrained", "pt-full"), ("~10x larger, pretrained", "pt-big")) if runs.has(s)]
    if not runs.has("pt-full", "pt-big"):
        return lines + ["Not run in this plan.", ""]
    lines += ["| model | parameters | relevance mass | pointing game | uniform baseline | defect macro-F1 | max token norm / median | tokens > 3x median | of those, on the defect (vs all patches) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, s in rows:
        lines.append(f"| {label} | {_fmt(runs.mean(s, 'parameters'))} | {_fmt(runs.mean(s, 'relevance_mass'))} | {_fmt(runs.mean(s, 'pointing_game'))} | "
                     f"{_fmt(runs.mean(s, 'baseline'))} | {_fmt(runs.mean(s, 'defect_macro_f1'))} | {_fmt(runs.mean(s, 'max_over_median'))} | "
                     f"{_fmt(runs.mean(s, 'high_norm_share'), True)} | {_fmt(runs.mean(s, 'high_norm_in_mask'), True)} "
                     f"(vs {_fmt(runs.mean(s, 'mask_patch_share'), True)}) |")
    small, big = runs.mean("pt-full", "relevance_mass"), runs.mean("pt-big", "relevance_mass")
    high, in_mask, area = runs.mean("pt-big", "high_norm_share"), runs.mean("pt-big", "high_norm_in_mask"), runs.mean("pt-big", "mask_patch_share")
    tokens = ("no patch token of the larger model exceeds 3x the median norm: no high-norm artifact tokens at this size"
              if not high > 0 else
              f"{_fmt(high, True)} of the larger model's patch tokens exceed 3x the median norm, and {_fmt(in_mask, True)} of those touch "
              f"the defect against {_fmt(area, True)} of all patches: "
              + ("they sit on the background, as Darcet et al. describe" if in_mask < area else "they are not background tokens"))
    lines += ["", f"Gradient-weighted attention, relevance mass on the defect: {_fmt(big)} (larger, pretrained) vs {_fmt(small)} (small, pretrained), "
              f"pointing game {_fmt(runs.mean('pt-big', 'pointing_game'))} vs {_fmt(runs.mean('pt-full', 'pointing_game'))}; "
              f"{'the larger model looks less at the defect, as the source saw' if big < small else 'the larger model does not look away from the defect'}. "
              f"Token norms: {tokens}. One seed each, so differences are reported, not judged. Darcet et al. saw artifact tokens in "
              "ViTs of 300M+ parameters trained long on large data; a 1.6M-parameter MAE trained for minutes is far from that.", ""]
    return lines


def pretrained_sections(records: dict[str, dict], figure_dir: Path, rel: str) -> list[str]:
    """The issue-17 sections, between markers so ``report --sections pretrain`` can replace them alone."""
    runs = Runs(records)
    return [PT_BEGIN, *section_pretraining(runs, figure_dir, rel), *section_f4_pretrained(runs), *section_label_efficiency(runs, figure_dir, rel),
            *section_f5_pretrained(runs), PT_END, ""]


def splice_marked(old: str, block: list[str]) -> str:
    """Replace the marked pretrained-start block of a report (or insert it before '## All runs')."""
    new = "\n".join(block).rstrip("\n")
    if PT_BEGIN in old and PT_END in old:
        head, rest = old.split(PT_BEGIN, 1)
        return head + new + rest.split(PT_END, 1)[1]
    at = old.find("## All runs")
    return (old[:at] + new + "\n\n" + old[at:]) if at >= 0 else old.rstrip("\n") + "\n\n" + new + "\n"


def write_report(out: Path, only: str | None = None, all_commits: bool = False) -> None:
    import shutil

    from vitinspect.storage import atomic_path, write_text

    records = collect(all_commits)
    if not records:
        raise VitinspectError(f"no {PREFIX}* experiments to report on; run `python -m vitinspect.study run` first")
    if only == "F6":  # rewrite F6 alone from its experiments; F1-F5 stay as they are in the report
        old = out.read_text() if out.exists() else "# The study: the source's findings, measured\n"
        write_text(out, splice_section(old, f6_peer(Study(records, out.with_suffix(""), out.with_suffix("").name)), "## F6"))
        print(f"study: F6 from {len(records)} experiments -> {out}")
        return
    if only == "pretrain":  # rewrite the pretrained-start sections alone; the other findings and figures stay
        fig_dir = out.with_suffix("")
        old = out.read_text() if out.exists() else "# The study: the source's findings, measured\n"
        with atomic_path(fig_dir, is_dir=True) as tmp:
            if fig_dir.is_dir():
                shutil.copytree(fig_dir, tmp, dirs_exist_ok=True)
            text = splice_marked(old, pretrained_sections(records, tmp, fig_dir.name))
        write_text(out, text)
        print(f"study: pretrained-start sections from {len(records)} experiments -> {out}")
        return
    fig_dir = out.with_suffix("")
    with atomic_path(fig_dir, is_dir=True) as tmp:
        text = build_report(records, tmp, fig_dir.name)
    write_text(out, text)
    print(f"study: {len(records)} experiments -> {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--plan", choices=["full", "toy", "f6", "pretrain"], default="full",
                    help="pretrain: F4/F5 of a pretrained start and label efficiency (issue 17)")
    ap.add_argument("--only", choices=["F6", "pretrain"],
                    help="rewrite only this finding's section(s) of the report (the f6 and pretrain plans imply it)")
    ap.add_argument("--seeds", type=int, default=3, help="baseline repetitions (training seeds)")
    ap.add_argument("--pretrained", help="a local ViT checkpoint to add to F5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every experiment (e.g. a GPU size)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--all-commits", action="store_true", help="report on experiments of every commit (dvc exp show -A), not HEAD's only")
    ap.add_argument("--out", default="reports/study.md")
    args = ap.parse_args(argv)
    if args.action == "run":
        extra = dict(s.split("=", 1) for s in args.set)
        run_plan(plan(args.plan, args.seeds, args.pretrained), extra, args.timeout)
    implied = {"f6": "F6", "pretrain": "pretrain"}.get(args.plan)
    write_report(Path(args.out), only=args.only or implied, all_commits=args.all_commits)


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])

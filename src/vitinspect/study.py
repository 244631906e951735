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
BIG = {"model.hidden_size": 160, "model.layers": 5, "model.heads": 5, "model.mlp_size": 640}  # ~1.5M parameters, ~10x


@dataclass(frozen=True)
class Experiment:
    setting: str  # e.g. "base", "epochs5"
    seed: int
    overrides: dict = field(default_factory=dict)

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
}


def plan(kind: str = "full", seeds: int = 3, pretrained: str | None = None) -> list[Experiment]:
    """The experiments: baseline x seeds, one run for every other setting (seed 0). The toy plan is the
    baseline and the epochs setting once each (the end-to-end test's plan)."""
    if kind == "toy":
        return [Experiment("base", 0), Experiment("epochs5", 0, SETTINGS["epochs5"])]
    settings = dict(SETTINGS)
    if pretrained:
        settings["pretrained"] = {"model.source": "pretrained", "model.name_or_path": pretrained}
    exps = [Experiment("base", s, {"train.seed": s}) for s in range(seeds)]
    return exps + [Experiment(k, 0, {"train.seed": 0, **v}) for k, v in settings.items()]


# --------------------------------------------------------------------------- running


def _dvc(*args: str, check: bool = True) -> str:
    return run_command(["dvc", *args], check=check)


def run_plan(exps: list[Experiment], extra: dict, timeout_s: float) -> None:
    """Queue every experiment (dropping earlier ones of the same name) and run the queue, one at a time."""
    for e in exps:
        _dvc("exp", "remove", e.name, check=False)
        sets = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in {**e.overrides, **extra}.items()]
        _dvc("exp", "run", "--queue", "-n", e.name, *[a for s in sets for a in ("-S", s)])
    _dvc("queue", "start", "-j", "1")
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = _dvc("queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(10)
    else:
        raise VitinspectError(f"the study queue did not finish within {timeout_s:.0f} s (dvc queue status)")
    failed = [line for line in status.splitlines() if "Failed" in line]
    if failed:
        raise VitinspectError(f"{len(failed)} study experiment(s) failed; see dvc queue logs: {failed[0].split()[0]}")


# --------------------------------------------------------------------------- collecting


def collect() -> dict[str, dict]:
    """name -> {rev, params, metrics} for every study experiment ``dvc exp show`` knows."""
    out = {}
    for base in json.loads(_dvc("exp", "show", "--json")):
        for exp in base.get("experiments") or []:
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


# The report's sections, in order: each finding reads the study and returns its markdown lines.
FINDINGS = [f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f4_strategies, f5_model_size]


def build_report(records: dict[str, dict], figure_dir: Path, rel: str) -> str:
    """reports/study.md as text; figures are written into figure_dir (linked as rel/<name>)."""
    st = Study(records, figure_dir, rel)
    lines = ["# The study: the source's findings, measured", "",
             f"{len(records)} experiments (`dvc exp show` names `{PREFIX}*`); the baseline is the default params, "
             f"run with {len(st.by_setting.get('base', []))} training seed(s). A difference is called real only when it exceeds half the range "
             "of the baseline's seeds (its spread); settings other than the baseline ran once.", ""]
    for finding in FINDINGS:
        lines += finding(st)
    return "\n".join(lines + all_runs(st)) + "\n"


def write_report(out: Path) -> None:
    from vitinspect.storage import atomic_path, write_text

    records = collect()
    if not records:
        raise VitinspectError(f"no {PREFIX}* experiments to report on; run `python -m vitinspect.study run` first")
    fig_dir = out.with_suffix("")
    with atomic_path(fig_dir, is_dir=True) as tmp:
        text = build_report(records, tmp, fig_dir.name)
    write_text(out, text)
    print(f"study: {len(records)} experiments -> {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--plan", choices=["full", "toy"], default="full")
    ap.add_argument("--seeds", type=int, default=3, help="baseline repetitions (training seeds)")
    ap.add_argument("--pretrained", help="a local ViT checkpoint to add to F5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every experiment (e.g. a GPU size)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--out", default="reports/study.md")
    args = ap.parse_args(argv)
    if args.action == "run":
        extra = dict(s.split("=", 1) for s in args.set)
        run_plan(plan(args.plan, args.seeds, args.pretrained), extra, args.timeout)
    write_report(Path(args.out))


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])

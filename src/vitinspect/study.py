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


def plan(kind: str = "full", seeds: int = 3, pretrained: str | None = None) -> list[Experiment]:
    """The experiments: baseline x seeds, one run for every other setting (seed 0)."""
    if kind == "toy":
        return [Experiment("base", 0), Experiment("epochs5", 0, {"train.epochs": 1})]
    exps = [Experiment("base", s, {"train.seed": s}) for s in range(seeds)]
    settings = {
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
    if pretrained:
        settings["pretrained"] = {"model.source": "pretrained", "model.name_or_path": pretrained}
    exps += [Experiment(k, 0, {"train.seed": 0, **v}) for k, v in settings.items()]
    return exps


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
    attention scores per input, run time) from the report files committed with it (``read(rev, path)``).
    """
    m = record["metrics"]
    rev = record.get("rev")

    def detail(path):
        return (read(rev, path) if rev else None) or {}

    aud = m.get("metrics/audit.json", {})
    test = detail("reports/evaluation.json").get("test", {}).get("argmax", {})
    att = detail("reports/attention.json")
    run_info = detail("reports/train_run.json")
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
        "train_seconds": run_info.get("wall_seconds", nan),
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


def build_report(records: dict[str, dict], figure_dir: Path, rel: str) -> str:
    """reports/study.md as text; figures are written into figure_dir (linked as rel/<name>)."""
    from vitinspect.figures import confusion_pair, study_panels
    from vitinspect.storage import save_figure

    figs = {name: figures_of(r) for name, r in records.items()}
    by_setting: dict[str, list[str]] = {}
    for name in sorted(records):
        setting = name[len(PREFIX):].rsplit("-s", 1)[0]
        by_setting.setdefault(setting, []).append(name)

    def values(setting, key):
        return [figs[n][key] for n in by_setting.get(setting, [])]

    def mean(setting, key):
        v = [x for x in values(setting, key) if not np.isnan(x)]
        return float(np.mean(v)) if v else float("nan")

    base = by_setting.get("base", [])
    lines = ["# The study: the source's five findings, measured", "",
             f"{len(records)} experiments (`dvc exp show` names `{PREFIX}*`); the baseline is the default params, "
             f"run with {len(base)} training seed(s). A difference is called real only when it exceeds half the range "
             "of the baseline's seeds (its spread); settings other than the baseline ran once.", ""]

    # F1
    lines += ["## F1: does 10 epochs beat 5?", ""]
    if base and by_setting.get("epochs5"):
        epochs = {s: records[by_setting[s][0]]["params"].get("train", {}).get("epochs") for s in ("base", "epochs5")}
        rows = [(f"{epochs['base']} epochs (baseline)", "base"), (f"{epochs['epochs5']} epochs", "epochs5")]
        lines += ["| run | macro-F1 | X<->Y confusion | accuracy |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {_fmt(mean(s, 'macro_f1'))} | {_fmt(mean(s, 'xy_confusion'), True)} | {_fmt(mean(s, 'accuracy'))} |" for label, s in rows]
        sp = spread(values("base", "macro_f1"))
        lines += ["", f"macro-F1 with {epochs['epochs5']} epochs against {epochs['base']}: {judge(mean('base', 'macro_f1'), mean('epochs5', 'macro_f1'), sp)}. "
                  f"The source found 10 epochs better than 5; here the {epochs['base']}-epoch baseline scores {_fmt(mean('base', 'macro_f1'))} "
                  f"and {epochs['epochs5']} epochs {_fmt(mean('epochs5', 'macro_f1'))}.", ""]
        cm10 = at_revision(records[base[0]]["rev"], "metrics/confusion_matrix.json")
        cm5 = at_revision(records[by_setting["epochs5"][0]]["rev"], "metrics/confusion_matrix.json")
        if cm10 and cm5:
            save_figure(confusion_pair(cm5, cm10, f"{epochs['epochs5']} epochs", f"{epochs['base']} epochs"), figure_dir / "f1_confusion.png")
            lines += [f"![{epochs['epochs5']} epochs (left) vs {epochs['base']} epochs (right)]({rel}/f1_confusion.png)", ""]
    else:
        lines += ["Not run in this plan.", ""]

    # F2
    lines += ["## F2: how much does a rare passed class hurt?", ""]
    base_ratio = records[base[0]]["params"].get("data", {}).get("passed_ratio") if base else None
    ratios = ([(float(base_ratio), "base")] if base_ratio is not None else []) + [(float(s[5:]), s) for s in by_setting if s.startswith("ratio")]
    ratios = sorted((r, s) for r, s in ratios if by_setting.get(s))
    if len(ratios) > 1:
        lines += ["| passed ratio | passed recall | false-reject rate | escape rate | macro-F1 |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r:g} | {_fmt(mean(s, 'passed_recall'))} | {_fmt(mean(s, 'false_reject_rate'), True)} | "
                  f"{_fmt(mean(s, 'escape_rate'), True)} | {_fmt(mean(s, 'macro_f1'))} |" for r, s in ratios]
        series = {k: [values(s, k) for _, s in ratios] for k in ("passed_recall", "false_reject_rate", "escape_rate")}
        save_figure(study_panels([r for r, _ in ratios], series, "passed ratio", percent={"false_reject_rate", "escape_rate"}),
                    figure_dir / "f2_ratio.png")
        top = ratios[-1][1]
        lines += ["", f"![passed recall, false-reject and escape rate against the passed ratio]({rel}/f2_ratio.png)", "",
                  f"Passed recall goes from {_fmt(mean('base', 'passed_recall'))} at {ratios[0][0]:g} to {_fmt(mean(top, 'passed_recall'))} at "
                  f"{ratios[-1][0]:g}: {judge(mean('base', 'passed_recall'), mean(top, 'passed_recall'), spread(values('base', 'passed_recall')))}. "
                  "The source reported that a rare passed class hurts and that 1/5 fixes it.", ""]
    else:
        lines += ["Not run in this plan.", ""]

    # F3
    lines += ["## F3: are the maps more sensible on raw images or on NSOARTC?", ""]
    if base and by_setting.get("raw"):
        lines += ["| trained on | map on | relevance mass | pointing game | baseline |", "|---|---|---:|---:|---:|"]
        for label, s in (("nsoartc", "base"), ("raw", "raw")):
            for shown in ("nsoartc", "raw"):
                lines.append(f"| {label} | {shown}{'' if shown == label else ' (out of distribution)'} | "
                             f"{_fmt(mean(s, f'relevance_mass_{shown}'))} | {_fmt(mean(s, f'pointing_game_{shown}'))} | {_fmt(mean(s, 'baseline'))} |")
        lines += ["", f"Gradient-weighted attention, each model on its own input: relevance mass {_fmt(mean('base', 'relevance_mass'))} "
                  f"(NSOARTC) vs {_fmt(mean('raw', 'relevance_mass'))} (raw), against a uniform map's {_fmt(mean('base', 'baseline'))}; "
                  f"raw against NSOARTC: {judge(mean('base', 'relevance_mass'), mean('raw', 'relevance_mass'), spread(values('base', 'relevance_mass')))}. "
                  f"Accuracy {_fmt(mean('base', 'accuracy'))} (NSOARTC) vs {_fmt(mean('raw', 'accuracy'))} (raw). "
                  "The source found the NSOARTC maps more sensible; maps of a model shown the representation it was not "
                  "trained on stay near the baseline.", ""]
    else:
        lines += ["Not run in this plan.", ""]

    # F4
    lines += ["## F4: how much does fine-tuning rewrite?", ""]
    strategies = [(s, s if s != "full" else "base") for s in ("full", "head", "last_blocks", "lora")]
    strategies = [(label, s) for label, s in strategies if by_setting.get(s)]
    if len(strategies) > 1:
        lines += ["| strategy | trainable % | accuracy | macro-F1 | mean relative change per block |", "|---|---:|---:|---:|---|"]
        for label, s in strategies:
            audit = at_revision(records[by_setting[s][0]]["rev"], "reports/audit.json") or {}
            changes = audit.get("relative_change_by_group", {})
            per_block = ", ".join(f"{g}: {v['mean_relative_change']:.2f}" for g, v in changes.items()
                                  if g.endswith(".attention") and v.get("mean_relative_change") is not None)
            lines.append(f"| {label} | {_fmt(mean(s, 'trainable_pct'))} | {_fmt(mean(s, 'accuracy'))} | {_fmt(mean(s, 'macro_f1'))} | {per_block or 'n/a'} |")
        said = "; ".join(f"{label}: {_fmt(mean(s, 'trainable_pct'))}% trainable, accuracy {_fmt(mean(s, 'accuracy'))}" for label, s in strategies)
        scratch = records[by_setting[strategies[0][1]][0]]["params"].get("model", {}).get("source") == "scratch"
        lines += ["", f"{said}. Full fine-tuning makes 100% of the parameters trainable by construction, as the source said of ViT-Large, "
                  "and every block moves (relative change above); the frozen strategies leave their frozen blocks at exactly 0."
                  + (" Here the model starts from random weights, so freezing part of it freezes noise: the partial strategies "
                     "lose accuracy, as expected. They are meant for a pretrained checkpoint (`--pretrained PATH`), where the "
                     "source's question (how much of a big pretrained ViT must change) applies." if scratch else ""), ""]
    else:
        lines += ["Not run in this plan.", ""]

    # F5
    lines += ["## F5: do small and big ViTs look at different things?", ""]
    sizes = [(label, s) for label, s in (("small (default)", "base"), ("~10x larger", "big"), ("pretrained", "pretrained")) if by_setting.get(s)]
    if len(sizes) > 1:
        lines += ["| model | parameters | relevance mass | pointing game | accuracy | training time (s) |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {label} | {_fmt(mean(s, 'parameters'))} | {_fmt(mean(s, 'relevance_mass'))} | {_fmt(mean(s, 'pointing_game'))} | "
                  f"{_fmt(mean(s, 'accuracy'))} | {_fmt(mean(s, 'train_seconds'))} |" for label, s in sizes]
        big_mass, base_mass = mean("big", "relevance_mass"), mean("base", "relevance_mass")
        verdict_big = judge(base_mass, big_mass, spread(values("base", "relevance_mass")))
        agrees = "agrees with" if big_mass < base_mass and verdict_big.startswith("real") else "does not reproduce"
        lines += ["", f"Relevance mass, larger model against the default: {verdict_big}; pointing game "
                  f"{_fmt(mean('big', 'pointing_game'))} vs {_fmt(mean('base', 'pointing_game'))}; training "
                  f"{_fmt(mean('big', 'train_seconds'))} s vs {_fmt(mean('base', 'train_seconds'))} s. "
                  f"The source saw clean maps from a ~160k-parameter ViT and background-drawn maps from a large pretrained one; "
                  f"this {agrees} that at ~10x from scratch (no pretraining, so none of the high-norm background tokens "
                  "large pretrained ViTs grow).", ""]
    else:
        lines += ["Not run in this plan.", ""]

    lines += ["## All runs", "", "| experiment | rev | accuracy | macro-F1 | passed recall | relevance mass |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {records[n]['rev'][:7]} | {_fmt(figs[n]['accuracy'])} | {_fmt(figs[n]['macro_f1'])} | "
              f"{_fmt(figs[n]['passed_recall'])} | {_fmt(figs[n]['relevance_mass'])} |" for n in sorted(records)]
    return "\n".join(lines) + "\n"


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

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


PRETRAIN = {"model.source": "pretrain"}  # the pretrain stage's MAE encoder as the starting point
FRACTIONS = (0.1, 0.3)  # label efficiency: shares of the labelled training parts


def plan(kind: str = "full", seeds: int = 3, pretrained: str | None = None) -> list[Experiment]:
    """The experiments: baseline x seeds, one run for every other setting (seed 0)."""
    if kind == "toy":
        return [Experiment("base", 0), Experiment("epochs5", 0, {"train.epochs": 1})]
    if kind == "pretrain":
        return pretrain_plan(seeds)
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


def pretrain_plan(seeds: int = 3) -> list[Experiment]:
    """F4 and F5 asked again of a pretrained start (``pt-*``), beside the from-scratch runs they need.

    Head-only from scratch and from the pretrained start run with ``seeds`` training seeds (the
    done-when comparison); the rest once. Every ``pt-*`` run of the small model shares one
    pretraining (same ``pretrain.*``: DVC's run cache restores it); the larger model has its own.
    Ordered so that a queue cut short has answered the most: the pretraining and full fine-tuning
    first, then two seeds of each head-only pair, label efficiency, the other strategies, the
    norm_pix_loss probe, the remaining seeds, the larger model last.
    """
    pt = lambda **o: {**PRETRAIN, **o}  # noqa: E731
    head = [(f"{p}head", s, {"train.seed": s, **(PRETRAIN if p else {}), "finetune.strategy": "head"})
            for s in range(seeds) for p in ("pt-", "")]
    frac = [(f"{p}frac{f}", 0, {"train.seed": 0, **(PRETRAIN if p else {}), "train.label_fraction": f})
            for f in FRACTIONS for p in ("pt-", "")]
    # The same probe after pretraining with per-patch normalised targets (norm_pix_loss): an MAE that only
    # learns the mean composite gives its encoder nothing to probe; normalised targets take that shortcut away.
    normpix = [("pt-normpix-head", s, pt(**{"train.seed": s, "finetune.strategy": "head", "pretrain.norm_pix_loss": True}))
               for s in range(min(seeds, 2))]
    order = [("pt-full", 0, pt(**{"train.seed": 0})), ("base", 0, {"train.seed": 0}), *head[:4], *frac,
             ("pt-last_blocks", 0, pt(**{"train.seed": 0, "finetune.strategy": "last_blocks"})),
             ("pt-lora", 0, pt(**{"train.seed": 0, "finetune.strategy": "lora"})), *normpix, *head[4:],
             ("pt-big", 0, pt(**{"train.seed": 0, **BIG}))]
    return [Experiment(name, seed, overrides) for name, seed, overrides in order]


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
    refs = run_command(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"]).split("\n")
    done = {line.split()[1] for line in refs if line and "stash" not in line}  # finished runs, not the queue's stash
    # -n: experiments of the last commits too, not only of HEAD (a study run before a merge or a fix commit).
    for base in json.loads(_dvc("exp", "show", "--json", "-n", "30")):
        for exp in base.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name")
                data = rev.get("data") or {}
                if not name or not name.startswith(PREFIX) or rev.get("error") or rev.get("rev") not in done:
                    continue  # not a study run, failed, or still queued / running
                if name in out:
                    continue  # the same name under several baselines: the newest (listed first) wins
                out[name] = {
                    "rev": rev["rev"],
                    "params": (data.get("params") or {}).get("params.yaml", {}).get("data", {}),
                    "metrics": {k: v.get("data", {}) for k, v in (data.get("metrics") or {}).items()},
                }
    return out


def figures_of(record: dict) -> dict:
    """The figures each finding needs, from one experiment's metrics (NaN where absent)."""
    m = record["metrics"]
    ev, att, aud = m.get("metrics/eval.json", {}), m.get("metrics/attention.json", {}), m.get("metrics/audit.json", {})
    run_info = m.get("reports/train_run.json", {})
    per = ev.get("per_class", {})
    own = att.get("model_input", "nsoartc")
    method = att.get("methods", {}).get("gradient") or next(iter(att.get("methods", {}).values()), {})
    nan = float("nan")
    f = {
        "accuracy": ev.get("accuracy", nan),
        "macro_f1": ev.get("macro_f1", nan),
        "escape_rate": ev.get("escape_rate", nan),
        "false_reject_rate": ev.get("false_reject_rate", nan),
        "passed_recall": per.get("passed", {}).get("recall", nan),
        "xy_confusion": np.nanmean([v for v in (ev.get("xy_confusion") or {}).values() if v is not None] or [nan]),
        "relevance_mass": method.get(own, {}).get("relevance_mass", nan),
        "pointing_game": method.get(own, {}).get("pointing_game", nan),
        "baseline": method.get(own, {}).get("baseline", nan),
        "trainable_pct": aud.get("model", {}).get("trainable_pct", nan),
        "parameters": aud.get("model", {}).get("total", nan),
        "train_seconds": run_info.get("wall_seconds", nan),
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
    from vitinspect.figures import confusion_pair, study_lines
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
        series = {k: [mean(s, k) for _, s in ratios] for k in ("passed_recall", "false_reject_rate", "escape_rate")}
        save_figure(study_lines([r for r, _ in ratios], series, "passed ratio", "share"), figure_dir / "f2_ratio.png")
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
            audit = at_revision(records[by_setting[s][0]]["rev"], "metrics/audit.json") or {}
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

    lines += pretrained_sections(records, figure_dir, rel)
    lines += ["## All runs", "", "| experiment | rev | accuracy | macro-F1 | passed recall | relevance mass |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {records[n]['rev'][:7]} | {_fmt(figs[n]['accuracy'])} | {_fmt(figs[n]['macro_f1'])} | "
              f"{_fmt(figs[n]['passed_recall'])} | {_fmt(figs[n]['relevance_mass'])} |" for n in sorted(records)]
    return "\n".join(lines) + "\n"


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


def pretrained_figures_of(record: dict) -> dict:
    """:func:`figures_of` plus the test macro-F1 over the defect classes and the token-norm look."""
    f = figures_of(record)
    m = record["metrics"]
    per = m.get("metrics/eval.json", {}).get("per_class", {})
    f1 = [v.get("f1") for c, v in per.items() if c != "passed" and v.get("f1") is not None]
    f["defect_macro_f1"] = float(np.mean(f1)) if f1 else float("nan")
    norms = m.get("metrics/attention.json", {}).get("token_norms", {})
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
        run_info = _json_bytes_at(rev, "models/pretrain/pretrain_run.json") or _json_bytes_at(rev, "dvclive/pretrain/run.json") or {}
        q = runs.records[runs.by_setting[s][0]]["params"].get("pretrain", {})
        shown = ", ".join(f"{v:.4f}" for v in losses[:3]) + (f", ..., {losses[-1]:.4f}" if len(losses) > 3 else "")
        rows.append(f"| {label} | {q.get('n_parts')} {q.get('input')} parts x {q.get('epochs')} epochs, mask {q.get('mask_ratio')} | "
                    f"{shown or 'n/a'} | {_fmt(run_info.get('images_per_second'))} | {_fmt(run_info.get('train_seconds'))} |")
        png = _bytes_at(rev, "plots/pretrain.png")
        if png:
            name = f"pt_reconstruction_{s}.png"
            (figure_dir / name).write_bytes(png)
            figures.append(f"![{label}: masked inputs and reconstructions]({rel}/{name})")
    if not rows:
        return lines + ["Not run in this plan.", ""]
    return lines + ["| encoder | pretraining | reconstruction loss per epoch | images/s | seconds |", "|---|---|---|---:|---:|", *rows, "",
                    "`ViTMAEForPreTraining` as in transformers' `run_mae` example, on parts rendered from their own seed "
                    "(none of them in the labelled splits), in the representation `train` uses; the loss is the mean squared "
                    "error of the masked patches (normalised pixels, or per-patch normalised with norm_pix_loss). A loss that "
                    "stops falling after an epoch or two, with grey reconstructions below, is an MAE that has learnt the mean "
                    "composite and little else. Timings are from a shared 2-core CPU (other jobs running).", "", *figures, ""]


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
                     f"{runs.cell(s, 'defect_macro_f1')} | {runs.cell(s, 'passed_recall')} | {_block_change(runs.json_at(s, 'metrics/audit.json'))} |")
    lines.append("")
    sc = runs.values("head", "defect_macro_f1")
    for setting, what in (("pt-head", "the pretrained start"), ("pt-normpix-head", "the norm_pix_loss pretrained start")):
        lines += _probe_verdict(runs.values(setting, "defect_macro_f1"), sc, what)
    full_pt, full_sc = _mean_block_change(runs.json_at("pt-full", "metrics/audit.json")), _mean_block_change(runs.json_at("base", "metrics/audit.json"))
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
    from vitinspect.figures import study_lines
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
    save_figure(study_lines([f for f, _, _ in rows], series, "labelled share of the training parts", "defect macro-F1"),
                figure_dir / "pt_label_efficiency.png")
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


def splice_sections(old: str, new_block: str) -> str:
    """Replace the marked pretrained-start block of an existing report (or insert it before '## All runs')."""
    if PT_BEGIN in old and PT_END in old:
        head, rest = old.split(PT_BEGIN, 1)
        return head + new_block.rstrip("\n") + rest.split(PT_END, 1)[1]
    at = old.find("## All runs")
    return (old[:at] + new_block + old[at:]) if at >= 0 else old.rstrip("\n") + "\n\n" + new_block


def write_report(out: Path, sections: str = "all") -> None:
    """Write the report; ``sections="pretrain"`` replaces only the pretrained-start block of the
    existing report (its other sections and figures stay as they are, from experiments not run here)."""
    import shutil

    from vitinspect.storage import atomic_path, write_text

    records = collect()
    if not records:
        raise VitinspectError(f"no {PREFIX}* experiments to report on; run `python -m vitinspect.study run` first")
    fig_dir = out.with_suffix("")
    with atomic_path(fig_dir, is_dir=True) as tmp:
        if sections == "pretrain":
            if fig_dir.is_dir():
                shutil.copytree(fig_dir, tmp, dirs_exist_ok=True)
            old = out.read_text() if out.exists() else "# The study\n\n"
            text = splice_sections(old, "\n".join(pretrained_sections(records, tmp, fig_dir.name)))
        else:
            text = build_report(records, tmp, fig_dir.name)
    write_text(out, text)
    print(f"study: {len(records)} experiments -> {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["run", "report"])
    ap.add_argument("--plan", choices=["full", "toy", "pretrain"], default="full",
                    help="full: F1-F5 from scratch; pretrain: F4/F5 of a pretrained start and label efficiency")
    ap.add_argument("--seeds", type=int, default=3, help="baseline repetitions (training seeds)")
    ap.add_argument("--pretrained", help="a local ViT checkpoint to add to F5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every experiment (e.g. a GPU size)")
    ap.add_argument("--timeout", type=float, default=3 * 3600)
    ap.add_argument("--out", default="reports/study.md")
    ap.add_argument("--sections", choices=["all", "pretrain"], default="all",
                    help="pretrain: rewrite only the pretrained-start sections of the existing report")
    args = ap.parse_args(argv)
    if args.action == "run":
        extra = dict(s.split("=", 1) for s in args.set)
        run_plan(plan(args.plan, args.seeds, args.pretrained), extra, args.timeout)
    write_report(Path(args.out), args.sections)


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])

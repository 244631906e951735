"""The findings: one function per finding, each reading the study's runs and returning its markdown lines.

A finding states what the source claimed, measures it on the study's experiments and judges the
difference against the baseline's seed spread (:func:`judge`). The report (``study.report``) puts
them in order; the pretrained-start sections (issue 17) live in ``study.pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.study.paired import peer_of
from vitinspect.study.plan import by_setting
from vitinspect.study.runs import figures_of, json_at


def fmt(x, pct=False) -> str:
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
        self.by_setting = by_setting(records)

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
    lines += [f"| {label} | {fmt(st.mean(s, 'macro_f1'))} | {fmt(st.mean(s, 'xy_confusion'), True)} | {fmt(st.mean(s, 'accuracy'))} |" for label, s in rows]
    lines += ["", f"macro-F1 with {epochs['epochs5']} epochs against {epochs['base']}: {st.judge('epochs5', 'macro_f1')}. "
              f"The source found 10 epochs better than 5; here the {epochs['base']}-epoch baseline scores {fmt(st.mean('base', 'macro_f1'))} "
              f"and {epochs['epochs5']} epochs {fmt(st.mean('epochs5', 'macro_f1'))}.", ""]
    cm10 = json_at(st.first("base")["rev"], "metrics/confusion_matrix.json")
    cm5 = json_at(st.first("epochs5")["rev"], "metrics/confusion_matrix.json")
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
    lines += [f"| {r:g} | {fmt(st.mean(s, 'passed_recall'))} | {fmt(st.mean(s, 'false_reject_rate'), True)} | "
              f"{fmt(st.mean(s, 'escape_rate'), True)} | {fmt(st.mean(s, 'macro_f1'))} |" for r, s in ratios]
    series = {k: [st.values(s, k) for _, s in ratios] for k in ("passed_recall", "false_reject_rate", "escape_rate")}
    link = st.figure(study_panels([r for r, _ in ratios], series, "passed ratio", percent={"false_reject_rate", "escape_rate"}),
                     "f2_ratio.png")
    top = ratios[-1][1]
    lines += ["", f"![passed recall, false-reject and escape rate against the passed ratio]({link})", "",
              f"Passed recall goes from {fmt(st.mean('base', 'passed_recall'))} at {ratios[0][0]:g} to {fmt(st.mean(top, 'passed_recall'))} at "
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
                         f"{fmt(st.mean(s, f'relevance_mass_{shown}'))} | {fmt(st.mean(s, f'pointing_game_{shown}'))} | {fmt(st.mean(s, 'baseline'))} |")
    lines += ["", f"Gradient-weighted attention, each model on its own input: relevance mass {fmt(st.mean('base', 'relevance_mass'))} "
              f"(NSOARTC) vs {fmt(st.mean('raw', 'relevance_mass'))} (raw), against a uniform map's {fmt(st.mean('base', 'baseline'))}; "
              f"raw against NSOARTC: {st.judge('raw', 'relevance_mass')}. "
              f"Accuracy {fmt(st.mean('base', 'accuracy'))} (NSOARTC) vs {fmt(st.mean('raw', 'accuracy'))} (raw). "
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
        audit = json_at(st.first(s)["rev"], "reports/audit.json") or {}
        changes = audit.get("relative_change_by_group", {})
        per_block = ", ".join(f"{g}: {v['mean_relative_change']:.2f}" for g, v in changes.items()
                              if g.endswith(".attention") and v.get("mean_relative_change") is not None)
        lines.append(f"| {label} | {fmt(st.mean(s, 'trainable_pct'))} | {fmt(st.mean(s, 'accuracy'))} | {fmt(st.mean(s, 'macro_f1'))} | {per_block or 'n/a'} |")
    said = "; ".join(f"{label}: {fmt(st.mean(s, 'trainable_pct'))}% trainable, accuracy {fmt(st.mean(s, 'accuracy'))}" for label, s in strategies)
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
    lines += [f"| {label} | {fmt(st.mean(s, 'parameters'))} | {fmt(st.mean(s, 'relevance_mass'))} | {fmt(st.mean(s, 'pointing_game'))} | "
              f"{fmt(st.mean(s, 'accuracy'))} |" for label, s in sizes]
    verdict_big = st.judge("big", "relevance_mass")
    agrees = "agrees with" if st.mean("big", "relevance_mass") < st.mean("base", "relevance_mass") and verdict_big.startswith("real") else "does not reproduce"
    lines += ["", f"Relevance mass, larger model against the default: {verdict_big}; pointing game "
              f"{fmt(st.mean('big', 'pointing_game'))} vs {fmt(st.mean('base', 'pointing_game'))}. "
              f"The source saw clean maps from a ~160k-parameter ViT and background-drawn maps from a large pretrained one; "
              f"this {agrees} that at ~10x from scratch (no pretraining, so none of the high-norm background tokens "
              "large pretrained ViTs grow).", ""]
    return lines


def f6_section(records: dict[str, dict], by_setting: dict[str, list[str]]) -> list[str]:
    """## F6: does the ViT beat the RT+SVM machine? Per setting, every seed, with a paired interval."""
    lines = ["## F6: does the ViT beat the RT+SVM machine?", ""]
    settings = [(label, s) for label, s in (("default data", "base"), ("passed ratio 0.2", "ratio0.2"), ("n_images 1000", "n1000"))
                if by_setting.get(s)]
    peers = {n: peer_of(records[n]["rev"]) for _, s in settings for n in by_setting[s]}
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



def f6_peer(st: Study) -> list[str]:
    return f6_section(st.records, st.by_setting)


# The report's sections, in order: each finding reads the study and returns its markdown lines.
FINDINGS = [f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f4_strategies, f5_model_size, f6_peer]

"""The findings: one function per finding, each reading the study's runs and returning its markdown lines.

A finding states what the source claimed, measures it on the study's experiments and judges the
difference against the baseline's seed spread (:meth:`Study.verdict_of`). The report (``study.report``) puts
them in order; the pretrained-start sections (issue 17) live in ``study.pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.core.storage import save_figure
from vitinspect.study.claims import BY_FINDING, Claim, compare, noise_word, spread, verdict
from vitinspect.study.lot_judges import f2_lot
from vitinspect.study.paired import peer_of
from vitinspect.study.plan import by_setting
from vitinspect.study.runs import bytes_at, figures_of, json_at
from vitinspect.visualization.figures import confusion_pair, study_panels


def fmt(x, pct=False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if pct else (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3f}")


class Study:
    """The study's experiments grouped by setting, with the figures of each: what every finding reads."""

    def __init__(self, records: dict[str, dict], figure_dir: Path, rel: str, prefix: str = ""):
        self.records, self.figure_dir, self.rel, self.prefix = records, figure_dir, rel, prefix  # prefix: of its figures' names
        self.figs = {name: figures_of(r) for name, r in records.items()}
        self.by_setting = by_setting(records)

    def has(self, *settings: str) -> bool:
        return all(self.by_setting.get(s) for s in settings)

    def values(self, setting: str, key: str) -> list[float]:
        return [self.figs[n][key] for n in self.by_setting.get(setting, [])]

    def mean(self, setting: str, key: str) -> float:
        v = [x for x in self.values(setting, key) if not np.isnan(x)]
        return float(np.mean(v)) if v else float("nan")

    def cell(self, setting: str, key: str, pct: bool = False) -> str:
        """The mean, ± half the range of the setting's seeds where it ran with several."""
        v = [x for x in self.values(setting, key) if not np.isnan(x)]
        if not v:
            return "n/a"
        return fmt(float(np.mean(v)), pct) + (f" ±{fmt(spread(v), pct)}" if len(v) > 1 else "")

    def first(self, setting: str) -> dict:
        """The record of the setting's first run (its params, its rev)."""
        return self.records[self.by_setting[setting][0]]

    def param(self, setting: str, section: str, key: str):
        return self.first(setting)["params"].get(section, {}).get(key)

    def verdict_of(self, setting: str, key: str) -> str:
        """``setting`` against the baseline on ``key``, judged by the larger seed spread of the two settings."""
        return noise_word(compare(self.values(setting, key), self.values("base", key)))

    def side(self, ref: str, metric: str) -> list[float]:
        """A claim's side: ``setting`` (its own input) or ``setting:input`` (the map on that input)."""
        setting, _, shown = ref.partition(":")
        return self.values(setting, f"{metric}_{shown}" if shown else metric)

    def compare(self, claim: Claim) -> dict:
        return compare(self.side(claim.higher, claim.metric), self.side(claim.lower, claim.metric))

    def seeds(self, setting: str) -> int:
        return len(self.by_setting.get(setting, []))

    def parts(self, setting: str) -> str:
        """The setting's data size (data.n_images) as the tables print it."""
        n = self.param(setting, "data", "n_images") if self.has(setting) else None
        return f"{int(n):,}" if isinstance(n, (int, float)) else "n/a"

    def meta(self, setting: str) -> str:
        """The two cells every row carries: its seeds and its data size."""
        return f"{self.seeds(setting)} | {self.parts(setting)}"

    def figure(self, fig, name: str) -> str:
        """Save a figure beside the report; return its markdown link path."""
        save_figure(fig, self.figure_dir / f"{self.prefix}{name}")
        return f"{self.rel}/{self.prefix}{name}"


def f1_epochs(st: Study) -> list[str]:
    lines = ["## F1: does 10 epochs beat 5?", ""]
    if not st.has("base", "epochs5"):
        return lines + ["Not run in this plan.", ""]
    epochs = {s: st.param(s, "train", "epochs") for s in ("base", "epochs5")}
    rows = [(f"{epochs['base']} epochs (baseline)", "base"), (f"{epochs['epochs5']} epochs", "epochs5")]
    lines += ["| run | seeds | parts | macro-F1 | X<->Y confusion | accuracy |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {st.meta(s)} | {st.cell(s, 'macro_f1')} | {st.cell(s, 'xy_confusion', True)} | {st.cell(s, 'accuracy')} |"
              for label, s in rows]
    claim = BY_FINDING["F1"]
    lines += ["", verdict(claim, st.compare(claim), f"the {epochs['base']}-epoch baseline scores macro-F1 {fmt(st.mean('base', 'macro_f1'))} "
                                                    f"and {epochs['epochs5']} epochs {fmt(st.mean('epochs5', 'macro_f1'))}; X<->Y confusion "
                                                    f"{fmt(st.mean('base', 'xy_confusion'), True)} against {fmt(st.mean('epochs5', 'xy_confusion'), True)}"), ""]
    cm10 = json_at(st.first("base")["rev"], "metrics/confusion_matrix.json")
    cm5 = json_at(st.first("epochs5")["rev"], "metrics/confusion_matrix.json")
    if cm10 and cm5:
        link = st.figure(confusion_pair(cm5, cm10, f"{epochs['epochs5']} epochs", f"{epochs['base']} epochs"), "f1_confusion.png")
        lines += [f"![{epochs['epochs5']} epochs (left) vs {epochs['base']} epochs (right), seed 0]({link})", ""]
    return lines


def f2_passed_ratio(st: Study) -> list[str]:
    lines = ["## F2: how much does a rare passed class hurt?", ""]
    base_ratio = st.param("base", "data", "passed_ratio") if st.has("base") else None
    ratios = ([(float(base_ratio), "base")] if base_ratio is not None else []) + [(float(s[5:]), s) for s in st.by_setting if s.startswith("ratio")]
    ratios = sorted((r, s) for r, s in ratios if st.has(s))
    if len(ratios) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| passed ratio | seeds | parts | passed recall | false-reject rate | escape rate | macro-F1 | lot false-reject (verdict) |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r:g} | {st.meta(s)} | {st.cell(s, 'passed_recall')} | {st.cell(s, 'false_reject_rate', True)} | "
              f"{st.cell(s, 'escape_rate', True)} | {st.cell(s, 'macro_f1')} | {st.cell(s, 'lot_false_reject_rate', True)} |"
              for r, s in ratios]
    lines += ["", "The first columns are the classifier's on the test split; the last is the line's verdict on the lot "
              "(metrics/lot.json: since issue 37 the unit-space gate's combined verdict, which learns good parts from good parts "
              "alone): where it stays low at the rare ratio, the gate, not more good parts, is what the line needed."]
    series = {k: [st.values(s, k) for _, s in ratios] for k in ("passed_recall", "false_reject_rate", "escape_rate")}
    link = st.figure(study_panels([r for r, _ in ratios], series, "passed ratio", percent={"false_reject_rate", "escape_rate"}),
                     "f2_ratio.png")
    claim = BY_FINDING["F2"]
    measured = (f"passed recall is {fmt(st.mean(claim.lower, 'passed_recall'))} at a passed ratio of {base_ratio:g} and "
                f"{fmt(st.mean(claim.higher, 'passed_recall'))} at {st.param(claim.higher, 'data', 'passed_ratio')}")
    lines += ["", f"![passed recall, false-reject and escape rate against the passed ratio]({link})", "",
              verdict(claim, st.compare(claim), measured) if st.has(claim.higher) else "Ratio 0.2 not run: F2 not judged.",
              *([f"The rare class has few test parts (about {rare_test_parts(st):.0f} passed parts in the test split at {base_ratio:g}), "
                 "which is why its seeds spread widely."] if rare_test_parts(st) >= 1 else []), ""]
    return lines + f2_lot(st, ratios)


def rare_test_parts(st: Study) -> float:
    """Passed parts in the baseline's test split: n_images x the test share x the passed ratio."""
    d = st.first("base")["params"].get("data", {})
    return float(d.get("n_images", 0)) * float((d.get("split") or {}).get("test", 0)) * float(d.get("passed_ratio", 0))


def f3_raw_vs_nsoartc(st: Study) -> list[str]:
    lines = ["## F3: are the maps more sensible on raw images or on NSOARTC?", ""]
    if not st.has("base"):
        return lines + ["Not run in this plan.", ""]
    claim = BY_FINDING["F3"]
    lines += ["| trained on | map on | seeds | parts | relevance mass | pointing game | uniform baseline | answers |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    roles = {("base", "raw"): "**the source's question**: one model, its map on the raw view",
             ("base", "nsoartc"): "**the source's question**: the same model, its map on the composite",
             ("raw", "raw"): "each model on its own input", ("raw", "nsoartc"): "cross-input (out of distribution)"}
    for label, s in (("nsoartc", "base"), ("raw", "raw")):
        if not st.has(s):
            continue
        for shown in ("nsoartc", "raw"):
            lines.append(f"| {label} | {shown}{'' if shown == label else ' (out of distribution)'} | {st.meta(s)} | "
                         f"{st.cell(s, f'relevance_mass_{shown}')} | {st.cell(s, f'pointing_game_{shown}')} | {fmt(st.mean(s, 'baseline'))} | "
                         f"{roles[(s, shown)]} |")
    c = st.compare(claim)
    lines += ["", "The source drew its fine-tuned model's maps on a raw image and on the NSOARTC composite of the same part. "
              "Its model read composites, so the first two rows ask its question: the NSOARTC-trained model's gradient-weighted "
              "map on the raw centre view, scored against the defect mask, beside its map on the composite of the same test parts.", "",
              verdict(claim, c, f"the NSOARTC-trained model's map puts {fmt(st.mean('base', 'relevance_mass_raw'))} of its mass on the "
                                f"defect on the raw view and {fmt(st.mean('base', 'relevance_mass_nsoartc'))} on the composite "
                                f"(a uniform map: {fmt(st.mean('base', 'baseline'))})"), ""]
    if st.has("raw"):
        own = compare(st.values("raw", "relevance_mass"), st.values("base", "relevance_mass"))
        lines += [f"Each model on its own input (a model trained on raw views against the NSOARTC-trained one), relevance mass "
                  f"{fmt(st.mean('raw', 'relevance_mass'))} against {fmt(st.mean('base', 'relevance_mass'))}: {noise_word(own)}; accuracy "
                  f"{fmt(st.mean('raw', 'accuracy'))} against {fmt(st.mean('base', 'accuracy'))}. That is a different question from the "
                  "source's (two models, each shown what it learnt), kept because it is the fair comparison of the two representations.", ""]
    lines += ["The source judged by eye on three products and explained its impression by pretraining: no composite like NSOARTC "
              "was in the pretrained model. Here the model is trained from scratch, so that explanation cannot apply; a map on "
              "an input the model never saw is out of distribution for it, whichever input that is.", ""]
    for cls in ("tilt_x", "retracted"):
        png = bytes_at(st.first("base")["rev"], f"plots/attention/{cls}.png")
        if png:
            (st.figure_dir / f"{st.prefix}f3_{cls}.png").write_bytes(png)
            lines += [f"![the NSOARTC-trained model (seed 0): {cls} parts, maps on the composite and on the raw view]"
                      f"({st.rel}/{st.prefix}f3_{cls}.png)", ""]
    return lines


def f4_strategies(st: Study) -> list[str]:
    lines = ["## F4: how much does fine-tuning rewrite?", ""]
    strategies = [(label, s) for label, s in (("full", "base"), ("head", "head"), ("last_blocks", "last_blocks"), ("lora", "lora")) if st.has(s)]
    if len(strategies) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| strategy | seeds | parts | trainable % | accuracy | macro-F1 | mean relative change per block (seed 0) |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for label, s in strategies:
        audit = json_at(st.first(s)["rev"], "reports/audit.json") or {}
        changes = audit.get("relative_change_by_group", {})
        per_block = ", ".join(f"{g}: {v['mean_relative_change']:.2f}" for g, v in changes.items()
                              if g.endswith(".attention") and v.get("mean_relative_change") is not None)
        lines.append(f"| {label} | {st.meta(s)} | {fmt(st.mean(s, 'trainable_pct'))} | {st.cell(s, 'accuracy')} | {st.cell(s, 'macro_f1')} | "
                     f"{per_block or 'n/a'} |")
    claim = BY_FINDING["F4"]
    scratch = st.param(strategies[0][1], "model", "source") == "scratch"
    lines += ["", verdict(claim, st.compare(claim), f"full fine-tuning leaves {fmt(st.mean('base', 'trainable_pct'))}% of the "
                                                   f"{fmt(st.mean('base', 'parameters'))} parameters trainable, head-only "
                                                   f"{fmt(st.mean('head', 'trainable_pct'))}%"),
              "That is true by construction: with AdamW every parameter that gets a gradient moves. What says something is how "
              "far each block moved (the relative change above); the frozen strategies leave their frozen blocks at exactly 0."
              + (" Here the model starts from random weights, so freezing part of it freezes noise: the partial strategies "
                 "lose accuracy, as expected. The source's question (how much of a pretrained ViT must change) is asked of "
                 "pretrained starts in the sections below." if scratch else ""), ""]
    return lines


def f5_model_size(st: Study) -> list[str]:
    lines = ["## F5: do small and big ViTs look at different things?", ""]
    sizes = [(label, s) for label, s in (("small (default)", "base"), ("~10x larger", "big"), ("pretrained", "pretrained")) if st.has(s)]
    if len(sizes) < 2:
        return lines + ["Not run in this plan.", ""]
    lines += ["| model | seeds | parts | parameters | relevance mass | pointing game | accuracy |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {label} | {st.meta(s)} | {fmt(st.mean(s, 'parameters'))} | {st.cell(s, 'relevance_mass')} | {st.cell(s, 'pointing_game')} | "
              f"{st.cell(s, 'accuracy')} |" for label, s in sizes]
    claim = BY_FINDING["F5"]
    lines += ["", verdict(claim, st.compare(claim), f"relevance mass {fmt(st.mean('base', 'relevance_mass'))} (small) against "
                                                   f"{fmt(st.mean('big', 'relevance_mass'))} (~10x larger), pointing game "
                                                   f"{fmt(st.mean('base', 'pointing_game'))} against {fmt(st.mean('big', 'pointing_game'))}"),
              "Both are trained from scratch here, so neither has the high-norm background tokens large pretrained ViTs grow "
              "(Darcet et al.); the pretrained sizes are compared below.", ""]
    return lines


def _vit_figures(record: dict, f: dict) -> dict:
    """The ViT's F6 figures of one run, as the peers' are read: accuracy, macro-F1 over every class and passed recall
    at argmax on the test split (reports/evaluation.json); escape and false-reject rates at its operating point
    (metrics/eval.json: since the gate its headline keys are the verdict's, its classifier_ keys the classifier's).
    A run without the report keeps what its eval.json holds. ``f``: :func:`figures_of` of the run."""
    m = dict(record["metrics"].get("metrics/eval.json", {}))
    if "classifier_threshold" in m:
        m = {k[len("classifier_"):]: v for k, v in m.items() if k.startswith("classifier_")}
    for key in ("accuracy", "macro_f1"):
        if not np.isnan(f[key]):
            m[key] = f[key]
    if not np.isnan(f["passed_recall"]):
        m.pop("false_reject_rate_argmax", None)
        m["per_class"] = {"passed": {"recall": f["passed_recall"]}}
    return m


def f6_section(records: dict[str, dict], by_setting: dict[str, list[str]], figs: dict | None = None) -> list[str]:
    """## F6: does the ViT beat the RT+SVM machine (and the CNN)? Per setting, every seed, with a paired interval against the
    stronger peer (:func:`stronger_peer`). ``figs``: each run's :func:`figures_of`, when the caller has them (read here
    otherwise)."""
    lines = ["## F6: does the ViT beat the RT+SVM machine?", ""]
    settings = [(label, s) for label, s in (("default data", "base"), ("passed ratio 0.2", "ratio0.2"), ("n_images 1000", "n1000"))
                if by_setting.get(s)]
    peers = {n: peer_of(records[n]["rev"]) for _, s in settings for n in by_setting[s]}
    if not settings or not any(p["svm"] for p in peers.values()):
        return lines + ["Not run in this plan (or its experiments predate the baseline stage).", ""]
    nan = float("nan")

    def get(m, *keys):
        # The classifier's figures: eval.json holds them under classifier_ keys since the gate (its headline keys are
        # the combined verdict's); escape rate and passed recall from the operating-point figures (escapes per
        # million; 1 - false-reject rate at argmax), else the older keys
        if isinstance(m, dict) and "classifier_threshold" in m:
            m = {k[len("classifier_"):]: v for k, v in m.items() if k.startswith("classifier_")}
        if keys == ("escape_rate",) and isinstance(m, dict) and "escapes_per_million" in m:
            return float(m["escapes_per_million"]) / 1e6
        if keys == ("per_class", "passed", "recall") and isinstance(m, dict) and "false_reject_rate_argmax" in m:
            return 1.0 - float(m["false_reject_rate_argmax"])
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
              "beside it; and a plain CNN (conv blocks, `baseline.cnn`) trained by the ViT's own Trainer on the same composites "
              "and split. All read the same parts as the ViT and are scored on the same test parts with the same function. "
              "Figures are the mean over the training seeds ±half their range (the peers do not depend on the ViT's seed); escape and "
              "false-reject rates are at each machine's operating point, passed recall at its argmax; n/a where a run has no "
              "figures of that machine (the CNN's before it joined). Accuracy and macro-F1 are at argmax for every machine. QEU reported 92.6–94.3 % accuracy for its machine.", "",
              "| data | seeds | ViT accuracy | SVM accuracy | logistic accuracy | CNN accuracy | ViT macro-F1 | SVM macro-F1 | CNN macro-F1 | ViT escape | SVM escape | ViT false-reject | SVM false-reject | ViT passed recall | SVM passed recall |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for label, s in settings:
        names = by_setting[s]
        vit = [_vit_figures(records[n], figs[n] if figs is not None else figures_of(records[n])) for n in names]
        svm, cnn = [peers[n]["svm"] for n in names], [peers[n].get("cnn") for n in names]
        lr = [(peers[n]["report"].get("logistic") or {}).get("test") for n in names]
        col = lambda ms, *k: stat([get(m, *k) for m in ms])  # noqa: E731
        lines.append(f"| {label} | {len(names)} | {col(vit, 'accuracy')} | {col(svm, 'accuracy')} | {col(lr, 'accuracy')} | "
                     f"{col(cnn, 'accuracy')} | {col(vit, 'macro_f1')} | {col(svm, 'macro_f1')} | {col(cnn, 'macro_f1')} | "
                     f"{col(vit, 'escape_rate')} | {col(svm, 'escape_rate')} | "
                     f"{col(vit, 'false_reject_rate')} | {col(svm, 'false_reject_rate')} | "
                     f"{col(vit, 'per_class', 'passed', 'recall')} | {col(svm, 'per_class', 'passed', 'recall')} |")
        peer, key_of = stronger_peer([peers[n] for n in names])
        paired = [(n, peers[n][key_of]) for n in names if peers[n].get(key_of)]
        for metric, key in (("accuracy", ""), ("macro-F1", "f1_")):
            if not paired:
                continue
            wins, losses = paired_wins([p for _, p in paired], key)
            detail = "; ".join(f"{n.rsplit('-', 1)[1]}: {p[f'{key}diff']:+.3f} [{p[f'{key}low']:+.3f}, {p[f'{key}high']:+.3f}]"
                               + (f" ({p['only_vit']} parts only the ViT gets right, {p['only_peer']} only the {peer})" if not key else "")
                               for n, p in paired)
            verdicts.append((f"{label}, {metric}", wins, losses, len(paired), detail, peer))
    lines += ["", "The ViT minus the stronger peer on the same test parts, per seed, with a 95 % interval (accuracy: paired normal "
              "approximation; macro-F1: paired bootstrap over the parts). The stronger peer of a setting is the one with the "
              "higher mean test macro-F1 over its runs, the SVM where the runs have no CNN figures:", ""]
    lines += [f"- **{label}** (against the {peer}): the ViT is ahead beyond the interval in {w} of {n} seeds, behind in {l_} of {n}. "
              f"{detail}." for label, w, l_, n, detail, peer in verdicts]
    return lines + ["", f6_answer(verdicts), ""]


def stronger_peer(peers: list[dict]) -> tuple[str, str]:
    """The stronger peer over one setting's runs (:func:`vitinspect.study.paired.peer_of` each) and the key of its
    paired comparison: ("CNN", "paired_cnn") where the CNN's mean test macro-F1 beats the SVM's, else ("SVM", "paired")
    (also where the runs have no CNN figures)."""
    def mean_f1(key):
        v = [float(p[key]["macro_f1"]) for p in peers if isinstance(p.get(key), dict)
             and isinstance(p[key].get("macro_f1"), (int, float)) and not np.isnan(p[key]["macro_f1"])]
        return float(np.mean(v)) if v else float("nan")

    cnn, svm = mean_f1("cnn"), mean_f1("svm")
    return ("CNN", "paired_cnn") if not np.isnan(cnn) and (np.isnan(svm) or cnn > svm) else ("SVM", "paired")


def paired_wins(paired: list[dict], key: str = "f1_") -> tuple[int, int]:
    """Seeds where the ViT is ahead of / behind the peer beyond the 95 % interval of the paired difference
    (``key`` "" for accuracy, "f1_" for macro-F1)."""
    return sum(p[f"{key}low"] > 0 for p in paired), sum(p[f"{key}high"] < 0 for p in paired)


def f6_answer(verdicts: list[tuple]) -> str:
    """One paragraph that answers F6 from the per-seed paired intervals (label, wins, losses, n, detail[, the peer
    compared: SVM unless named])."""
    parts = []
    for label, wins, losses, n, _, *peer in verdicts:
        peer = peer[0] if peer else "SVM"
        if wins == n:
            parts.append(f"on {label} yes, in every seed ({wins} of {n})")
        elif losses == n:
            parts.append(f"on {label} no: the {peer} is ahead in every seed ({losses} of {n})")
        elif wins > losses:
            parts.append(f"on {label} mostly: ahead in {wins} of {n} seeds, behind in {losses}, the rest within the interval")
        elif losses > wins:
            parts.append(f"on {label} mostly not: behind in {losses} of {n} seeds, ahead in {wins}, the rest within the interval")
        else:
            parts.append(f"on {label} not clearly: ahead in {wins} and behind in {losses} of {n} seeds beyond the interval")
    if not parts:
        return "**Answer.** Not measured: no experiment holds both machines' per-part predictions."
    return ("**Answer: does the ViT beat the stronger peer?** " + "; ".join(parts) + ". A seed counts only when the 95 % "
            "interval of the difference on the same test parts excludes zero.")



def f6_peer(st: Study) -> list[str]:
    return f6_section(st.records, st.by_setting, st.figs)


# The report's sections, in order: each finding reads the study and returns its markdown lines.
FINDINGS = [f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f4_strategies, f5_model_size, f6_peer]

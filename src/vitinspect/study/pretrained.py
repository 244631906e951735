"""The pretrained-start sections (issue 17): the MAE pretraining, F4 and F5 again, and label efficiency.

They sit between markers in the report so that ``report --only pretrain`` can replace them alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.core.storage import save_figure
from vitinspect.study.findings import fmt, spread
from vitinspect.study.plan import FRACTIONS, by_setting
from vitinspect.study.runs import bytes_at, json_at, pretrained_figures_of
from vitinspect.visualization.figures import study_panels

PT_BEGIN, PT_END = "<!-- pretrained-start sections: begin -->", "<!-- pretrained-start sections: end -->"


class Runs:
    """The study runs by setting, with the figures the pretrained-start sections need."""

    def __init__(self, records: dict[str, dict]):
        self.records = records
        self.figs = {n: pretrained_figures_of(r) for n, r in records.items()}
        self.by_setting = by_setting(records)

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
            return f"{fmt(float(np.mean(v)), pct)} ± {fmt(spread(v), pct)} (n={len(v)})"
        return fmt(float(np.mean(v)) if v else float("nan"), pct)

    def meta(self, setting: str) -> str:
        """Seeds and data size of a setting: the two cells every row carries."""
        n = self.param(setting, "data", "n_images")
        return f"{len(self.by_setting.get(setting, []))} | {f'{int(n):,}' if isinstance(n, (int, float)) else 'n/a'}"

    def json_at(self, setting: str, path: str):
        names = self.by_setting.get(setting)
        return json_at(self.records[names[0]]["rev"], path) if names else None

    def param(self, setting: str, section: str, key: str):
        names = self.by_setting.get(setting)
        return self.records[names[0]]["params"].get(section, {}).get(key) if names else None


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


def pretraining_row(runs: Runs, label: str, setting: str, figure_dir: Path, rel: str) -> tuple[str, str | None]:
    """One pretraining's table row (parts, epochs, mask, loss per epoch) and its reconstruction figure's link."""
    rev = runs.records[runs.by_setting[setting][0]]["rev"]
    curve = bytes_at(rev, "dvclive/pretrain/plots/metrics/reconstruction_loss.tsv") or b""
    losses = [float(line.split("\t")[1]) for line in curve.decode().splitlines()[1:] if "\t" in line]
    q = runs.records[runs.by_setting[setting][0]]["params"].get("pretrain", {})
    shown = ", ".join(f"{v:.4f}" for v in losses[:3]) + (f", ..., {losses[-1]:.4f}" if len(losses) > 3 else "")
    row = (f"| {label} | {q.get('n_parts')} {q.get('input')} parts x {q.get('epochs')} epochs, mask {q.get('mask_ratio')} | "
           f"{shown or 'n/a'} |")
    png = bytes_at(rev, "plots/pretrain.png")
    if not png:
        return row, None
    name = f"pt_reconstruction_{setting}.png"
    (figure_dir / name).write_bytes(png)
    return row, f"![{label}: masked inputs and reconstructions]({rel}/{name})"


def section_pretraining(runs: Runs, figure_dir: Path, rel: str) -> list[str]:
    """What the MAE pretraining itself did: reconstruction loss per epoch and its cost, for each pretraining."""
    lines = ["## The pretraining (masked autoencoder on unlabeled parts)", ""]
    rows, figures = [], []
    for label, s in (("small", "pt-full"), ("small, norm_pix_loss", "pt-normpix-head"), ("~10x larger", "pt-big")):
        if not runs.has(s):
            continue
        row, figure = pretraining_row(runs, label, s, figure_dir, rel)
        rows.append(row)
        figures += [figure] if figure else []
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
    lines += ["| strategy | start | seeds | parts | trainable % | accuracy | defect macro-F1 | passed recall | relative change per block (attention/MLP) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, start, s in rows:
        lines.append(f"| {label} | {start} | {runs.meta(s)} | {fmt(runs.mean(s, 'trainable_pct'))} | {runs.cell(s, 'accuracy')} | "
                     f"{runs.cell(s, 'defect_macro_f1')} | {runs.cell(s, 'passed_recall')} | {_block_change(runs.json_at(s, 'reports/audit.json'))} |")
    lines.append("")
    sc = runs.values("head", "defect_macro_f1")
    for setting, what in (("pt-head", "the pretrained start"), ("pt-normpix-head", "the norm_pix_loss pretrained start")):
        lines += _probe_verdict(runs.values(setting, "defect_macro_f1"), sc, what)
    full_pt, full_sc = _mean_block_change(runs.json_at("pt-full", "reports/audit.json")), _mean_block_change(runs.json_at("base", "reports/audit.json"))
    if not np.isnan(full_pt):
        lines.append(f"Full fine-tuning from the pretrained start moves the blocks by {full_pt:.2f} on average (relative change "
                     f"‖W−W0‖/‖W0‖), against {fmt(full_sc)} from scratch: "
                     + ("most of the network stays near its starting point" if full_pt < 0.3 else
                        "the network is still largely rewritten, so the pretrained start is not kept")
                     + (" (changes of hundreds or thousands mean the pretrained weights were near zero: the MAE had shrunk its "
                        "attention projections while it learnt to output the mean composite, so there was little to keep)"
                        if full_pt > 10 else "")
                     + f"; defect macro-F1 {fmt(runs.mean('pt-full', 'defect_macro_f1'))} vs {fmt(runs.mean('base', 'defect_macro_f1'))} from scratch. "
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
    lines = ["## Label efficiency: does the pretrained start need fewer labelled parts?", ""]
    rows = [(f, f"frac{f}", f"pt-frac{f}") for f in FRACTIONS] + [(1.0, "base", "pt-full")]
    rows = [r for r in rows if runs.has(r[1], r[2])]
    if not rows:
        return lines + ["Not run in this plan.", ""]
    n_images = runs.param(rows[0][1], "data", "n_images") or 0
    share = (runs.records[runs.by_setting[rows[0][1]][0]]["params"].get("data", {}).get("split", {}) or {}).get("train", 0)
    lines += ["| labelled share | ≈ labelled parts | seeds scratch / pretrained | parts | defect macro-F1 scratch | defect macro-F1 pretrained | accuracy scratch | accuracy pretrained | passed recall scratch / pretrained |",
              "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for f, sc, pt in rows:
        lines.append(f"| {f:g} | {round(n_images * share * f):,} | {len(runs.by_setting[sc])} / {len(runs.by_setting[pt])} | {n_images:,} | "
                     f"{fmt(runs.mean(sc, 'defect_macro_f1'))} | {fmt(runs.mean(pt, 'defect_macro_f1'))} | "
                     f"{fmt(runs.mean(sc, 'accuracy'))} | {fmt(runs.mean(pt, 'accuracy'))} | "
                     f"{fmt(runs.mean(sc, 'passed_recall'))} / {fmt(runs.mean(pt, 'passed_recall'))} |")
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
              f"Each share ran with one training seed; the only seed spread measured here is the head-only one (±{fmt(half)}), and "
              f"the pretrained start is ahead by more than it at {ahead} of {len(rows)} shares. The subset is stratified by class "
              "(at least one part of each), so the rare passed class keeps a few parts even at 10 %.", ""]
    return lines


def section_f5_pretrained(runs: Runs) -> list[str]:
    """F5 again with both sizes pretrained: do the maps still land on the defect, and does the larger one grow high-norm tokens?"""
    lines = ["## F5 from a pretrained start: small vs ~10x larger, both pretrained", ""]
    rows = [(label, s) for label, s in (("small, scratch", "base"), ("small, pretrained", "pt-full"), ("~10x larger, pretrained", "pt-big")) if runs.has(s)]
    if not runs.has("pt-full", "pt-big"):
        return lines + ["Not run in this plan.", ""]
    lines += ["| model | seeds | parts | parameters | relevance mass | pointing game | uniform baseline | defect macro-F1 | max token norm / median | tokens > 3x median | of those, on the defect (vs all patches) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for label, s in rows:
        lines.append(f"| {label} | {runs.meta(s)} | {fmt(runs.mean(s, 'parameters'))} | {fmt(runs.mean(s, 'relevance_mass'))} | {fmt(runs.mean(s, 'pointing_game'))} | "
                     f"{fmt(runs.mean(s, 'baseline'))} | {fmt(runs.mean(s, 'defect_macro_f1'))} | {fmt(runs.mean(s, 'max_over_median'))} | "
                     f"{fmt(runs.mean(s, 'high_norm_share'), True)} | {fmt(runs.mean(s, 'high_norm_in_mask'), True)} "
                     f"(vs {fmt(runs.mean(s, 'mask_patch_share'), True)}) |")
    small, big = runs.mean("pt-full", "relevance_mass"), runs.mean("pt-big", "relevance_mass")
    high, in_mask, area = runs.mean("pt-big", "high_norm_share"), runs.mean("pt-big", "high_norm_in_mask"), runs.mean("pt-big", "mask_patch_share")
    tokens = ("no patch token of the larger model exceeds 3x the median norm: no high-norm artifact tokens at this size"
              if not high > 0 else
              f"{fmt(high, True)} of the larger model's patch tokens exceed 3x the median norm, and {fmt(in_mask, True)} of those touch "
              f"the defect against {fmt(area, True)} of all patches: "
              + ("they sit on the background, as Darcet et al. describe" if in_mask < area else "they are not background tokens"))
    lines += ["", f"Gradient-weighted attention, relevance mass on the defect: {fmt(big)} (larger, pretrained) vs {fmt(small)} (small, pretrained), "
              f"pointing game {fmt(runs.mean('pt-big', 'pointing_game'))} vs {fmt(runs.mean('pt-full', 'pointing_game'))}; "
              f"{'the larger model looks less at the defect, as the source saw' if big < small else 'the larger model does not look away from the defect'}. "
              f"Token norms: {tokens}. One seed each, so differences are reported, not judged. Darcet et al. saw artifact tokens in "
              "ViTs of 300M+ parameters trained long on large data; a 1.6M-parameter MAE trained for minutes is far from that.", ""]
    return lines


def pretrained_sections(records: dict[str, dict], figure_dir: Path, rel: str) -> list[str]:
    """The issue-17 sections, between markers so ``report --sections pretrain`` can replace them alone."""
    runs = Runs(records)
    return [PT_BEGIN, *section_pretraining(runs, figure_dir, rel), *section_f4_pretrained(runs), *section_label_efficiency(runs, figure_dir, rel),
            *section_f5_pretrained(runs), PT_END, ""]

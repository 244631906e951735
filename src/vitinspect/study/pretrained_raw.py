"""The raw-pretraining sections (issue 25): F4, label efficiency and F5 from an encoder pretrained on raw views.

The masked autoencoder learns on raw centre views (it cannot on composites: they are white beyond
the RT window). Each setting runs with several training seeds, and every answer is "yes", "no" or
"within noise", judged by the spread of the settings compared (``claims.compare``). The block sits
between markers so that ``report --only pretrain`` can replace it alone.
"""

from __future__ import annotations

from pathlib import Path

from vitinspect.study.claims import BY_FINDING, answer, compare, noise_word
from vitinspect.study.findings import fmt
from vitinspect.study.plan import RAW_FRACTION
from vitinspect.study.pretrained import Runs, _block_change, _mean_block_change, pretraining_row

RAW_BEGIN, RAW_END = "<!-- raw-pretraining sections: begin -->", "<!-- raw-pretraining sections: end -->"
FRAC = f"frac{RAW_FRACTION}"
LABELS = {"defect_macro_f1": "Defect macro-F1", "relevance_mass": "Relevance mass"}


def question(runs: Runs, text: str, pretrained: str, scratch: str, metric: str = "defect_macro_f1") -> tuple[str, str, str]:
    """One question "does the pretrained start beat scratch here?": (the question, its answer word, its line)."""
    c = compare(runs.values(pretrained, metric), runs.values(scratch, metric))
    word = answer(c)
    line = (f"- **{text}: {word}.** {LABELS.get(metric, metric)} {fmt(runs.mean(pretrained, metric))} (raw-pretrained) against "
            f"{fmt(runs.mean(scratch, metric))} (scratch): {noise_word(c)}.")
    return text, word, line


def section_pretraining_raw(runs: Runs, figure_dir: Path, rel: str) -> list[str]:
    lines = ["## Pretraining on raw views (masked autoencoder)", ""]
    rows = [pretraining_row(runs, label, s, figure_dir, rel) for label, s in (("small", "ptraw-full"), ("~10x larger", "ptraw-big"))
            if runs.has(s)]
    if not rows:
        return lines + ["Not run in this plan.", ""]
    return lines + ["| encoder | pretraining | reconstruction loss per epoch |", "|---|---|---|", *[r for r, _ in rows], "",
                    "The same MAE as above, on raw centre views of unlabeled parts (`pretrain.input: raw`). Unlike composites, raw "
                    "views have structure a masked patch can be predicted from (the housing and the posts), so the loss falls. "
                    "The encoder is then fine-tuned on NSOARTC composites (it saw raw views, the head reads composites) or on raw views. "
                    "Every small-model run shares one pretraining (one `pretrain.seed`, restored from DVC's run cache); the "
                    "seeds vary the fine-tuning.", "", *[f for _, f in rows if f], ""]


def section_f4_raw(runs: Runs) -> tuple[list[str], list[tuple[str, str]]]:
    lines = ["## F4 from the raw-pretrained start: does fine-tuning still rewrite everything?", ""]
    if not runs.has("ptraw-full"):
        return lines + ["Not run in this plan.", ""], []
    table = [("full", "scratch", "nsoartc", "base"), ("head", "scratch", "nsoartc", "head"),
             ("full", "raw-pretrained", "nsoartc", "ptraw-full"), ("head (linear probe)", "raw-pretrained", "nsoartc", "ptraw-head"),
             ("last_blocks", "raw-pretrained", "nsoartc", "ptraw-last_blocks"), ("lora", "raw-pretrained", "nsoartc", "ptraw-lora"),
             ("full", "scratch", "raw", "raw"), ("full", "raw-pretrained", "raw", "ptraw-rawft")]
    lines += ["| strategy | start | fine-tuned on | seeds | parts | trainable % | accuracy | defect macro-F1 | passed recall | "
              "relative change per block, seed 0 (attention/MLP) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, start, on, s in table:
        if runs.has(s):
            lines.append(f"| {label} | {start} | {on} | {runs.meta(s)} | {fmt(runs.mean(s, 'trainable_pct'))} | {runs.cell(s, 'accuracy')} | "
                         f"{runs.cell(s, 'defect_macro_f1')} | {runs.cell(s, 'passed_recall')} | "
                         f"{_block_change(runs.json_at(s, 'reports/audit.json'))} |")
    moved = {s: _mean_block_change(runs.json_at(s, "reports/audit.json")) for s in ("ptraw-full", "base")}
    answers = [question(runs, "Full fine-tuning on composites from the raw-pretrained start beats scratch", "ptraw-full", "base"),
               question(runs, "Head-only (linear probe) from the raw-pretrained start beats head-only from scratch", "ptraw-head", "head"),
               question(runs, "Full fine-tuning on raw views from the raw-pretrained start beats scratch on raw views", "ptraw-rawft", "raw")]
    lines += ["", *[line for _, _, line in answers], "",
              f"Full fine-tuning from the raw-pretrained start moves the blocks by {fmt(moved['ptraw-full'])} on average (relative change "
              f"‖W−W0‖/‖W0‖, seed 0) against {fmt(moved['base'])} from random weights: "
              + ("most of the pretrained encoder is kept." if moved["ptraw-full"] < 0.3 else "the pretrained encoder is still largely rewritten.")
              + f" {BY_FINDING['F4'].finding}'s claim (all parameters trainable) holds by construction for full fine-tuning; the partial "
              "strategies keep their frozen blocks at exactly 0."
              + (" last_blocks and LoRA ran once (described, not judged)." if runs.has("ptraw-last_blocks") or runs.has("ptraw-lora")
                 else " last_blocks and LoRA from this start are in the plan but were not run for this report."), ""]
    return lines, [(text, word) for text, word, _ in answers]


def section_labels_raw(runs: Runs) -> tuple[list[str], list[tuple[str, str]]]:
    lines = ["## Label efficiency from the raw-pretrained start", ""]
    if not runs.has(FRAC, f"ptraw-{FRAC}"):
        return lines + ["Not run in this plan.", ""], []
    n_images = runs.param(FRAC, "data", "n_images") or 0
    share = (runs.param(FRAC, "data", "split") or {}).get("train", 0)
    lines += ["| labelled share | ≈ labelled parts | start | seeds | parts | defect macro-F1 | accuracy | passed recall |",
              "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for f, sc, pt in ((RAW_FRACTION, FRAC, f"ptraw-{FRAC}"), (1.0, "base", "ptraw-full")):
        for start, s in (("scratch", sc), ("raw-pretrained", pt)):
            if runs.has(s):
                lines.append(f"| {f:g} | {round(n_images * share * f):,} | {start} | {runs.meta(s)} | {runs.cell(s, 'defect_macro_f1')} | "
                             f"{runs.cell(s, 'accuracy')} | {runs.cell(s, 'passed_recall')} |")
    a = question(runs, f"With {RAW_FRACTION:g} of the labels, the raw-pretrained start beats scratch", f"ptraw-{FRAC}", FRAC)
    return lines + ["", a[2], "", "The subset is stratified by class (at least one part of each); the unlabeled pretraining parts "
                    "are rendered from their own seed, none of them in the labelled splits.", ""], [a[:2]]


def section_f5_raw(runs: Runs) -> list[str]:
    lines = ["## F5 from the raw-pretrained start: small vs ~10x larger", ""]
    if not runs.has("ptraw-full", "ptraw-big"):
        return lines + ["Not run in this plan.", ""]
    lines += ["| model | seeds | parts | parameters | relevance mass | pointing game | uniform baseline | defect macro-F1 | "
              "max token norm / median | tokens > 3x median |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, s in (("small, raw-pretrained", "ptraw-full"), ("~10x larger, raw-pretrained", "ptraw-big")):
        lines.append(f"| {label} | {runs.meta(s)} | {fmt(runs.mean(s, 'parameters'))} | {runs.cell(s, 'relevance_mass')} | "
                     f"{runs.cell(s, 'pointing_game')} | {fmt(runs.mean(s, 'baseline'))} | {runs.cell(s, 'defect_macro_f1')} | "
                     f"{runs.cell(s, 'max_over_median')} | {runs.cell(s, 'high_norm_share', True)} |")
    c = compare(runs.values("ptraw-full", "relevance_mass"), runs.values("ptraw-big", "relevance_mass"))
    word = answer(c)
    said = {"yes": "the small model's maps land on the defect more, as the source saw",
            "no": "the larger model's maps land on the defect more, against what the source saw",
            "within noise": "the two sizes do not differ beyond the seed spread", "not judged": "not judged"}[word]
    high = runs.mean("ptraw-big", "high_norm_share")
    return lines + ["", f"- **F5 (small maps cleaner than big) from the raw-pretrained start: {word}.** Relevance mass "
                    f"{fmt(runs.mean('ptraw-full', 'relevance_mass'))} (small) against {fmt(runs.mean('ptraw-big', 'relevance_mass'))} "
                    f"(~10x larger): {noise_word(c)}; {said}. "
                    + ("No patch token of the larger model exceeds 3x the median norm: no high-norm artifact tokens at this size."
                       if not high > 0 else f"{fmt(high, True)} of the larger model's patch tokens exceed 3x the median norm."), ""]


def raw_sections(records: dict[str, dict], figure_dir: Path, rel: str) -> list[str]:
    """The raw-pretraining block, between its markers, ending with the plain answer."""
    runs = Runs(records)
    if not any(s.startswith("ptraw-") for s in runs.by_setting):
        return []
    f4, a4 = section_f4_raw(runs)
    labels, al = section_labels_raw(runs)
    f5 = section_f5_raw(runs)
    answers = a4 + al
    beats = [t for t, w in answers if w == "yes"]
    plain = ("**Does any pretrained start beat scratch beyond the seed spread?** "
             + (f"Yes, here: {'; '.join(beats)}." if beats else
                "No: " + "; ".join(f"{t[0].lower() + t[1:]}? {w}" for t, w in answers) + ".")
             + " (From the raw-pretrained start; the NSOARTC-pretrained start has its own answers, from its own runs, above.)")
    return [RAW_BEGIN, *section_pretraining_raw(runs, figure_dir, rel), *f4, *labels, *f5, plain, "", RAW_END, ""]


"""The findings on another renderer's parts (issue 26): F1-F3 and F6 asked again, set beside the 2-D answers.

The experiments ``study-<renderer>-<setting>-s<seed>`` (``plan.renderer_plan``) are read as a study of
their own by the same finding functions (headings one level down, figure names prefixed with the
renderer), after a table that puts each finding's answer on both renderers side by side and says which
changed. The block sits between markers: a report written without these runs keeps the previous block.
"""

from __future__ import annotations

import numpy as np

from vitinspect.study.claims import BY_FINDING, answer
from vitinspect.study.findings import Study, f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f6_peer, fmt, paired_wins, stronger_peer
from vitinspect.study.paired import peer_of
from vitinspect.study.plan import PREFIX, RENDERERS, renderer_of
from vitinspect.study.runs import json_at

LABELS = {"blender": "Blender"}
COMPARED = {"F1": "macro-F1, the baseline's epochs (train.epochs) against 5", "F2": "passed recall, passed ratio 0.2 against 0.02",
            "F3": "relevance mass of the NSOARTC model's map, on the raw view against on the composite",
            "F6": "the ViT against the stronger peer (RT+SVM or CNN) on macro-F1, seeds ahead beyond the 95 % interval"}


def markers(renderer: str) -> tuple[str, str]:
    return f"<!-- {renderer} renderer sections: begin -->", f"<!-- {renderer} renderer sections: end -->"


def of_renderer(records: dict[str, dict], renderer: str) -> dict[str, dict]:
    """One renderer's experiments, named as the 2-D study names its own (study-blender-base-s0 -> study-base-s0)."""
    cut = len(PREFIX) + len(renderer) + 1
    return {PREFIX + n[cut:]: r for n, r in records.items() if renderer_of(n) == renderer}


def summary(st: Study, finding: str) -> tuple[str, str]:
    """A finding's figures and its answer word on one study, e.g. ("0.903 against 0.563, ±0.038", "yes")."""
    if finding == "F6":
        peers = [peer_of(st.records[n]["rev"]) for n in st.by_setting.get("base", [])]
        _, key = stronger_peer(peers)
        paired = [p[key] for p in peers if p.get(key)]
        if not paired:
            return "not run", "not judged"
        wins, losses = paired_wins(paired)
        n = len(paired)
        word = ("yes" if wins == n else "no" if losses == n else "mostly yes" if wins > losses else "mostly no" if losses > wins
                else "within noise")
        return f"ahead in {wins} of {n} seeds, behind in {losses}", word
    claim = BY_FINDING[finding]
    c = st.compare(claim)
    if not all(c["n"]):
        return "not run", "not judged"
    means = [float(np.mean([x for x in st.side(ref, claim.metric) if not np.isnan(x)])) for ref in (claim.higher, claim.lower)]
    return f"{fmt(means[0])} against {fmt(means[1])}" + (f", ±{fmt(c['spread'])}" if not np.isnan(c["spread"]) else ""), answer(c)


def changed(a: str, b: str) -> str:
    if "not judged" in (a, b):
        return "cannot tell"
    return "no" if a == b else f"**yes**: {a} → {b}"


def context_rows(sts: list[Study], kept: dict[str, list[str]] | None = None) -> list[str]:
    """What each renderer's baseline is: its size, whether the ViT learnt, the peer, the composite's contrast (the 2-D
    cells from ``kept`` where given: :func:`two_d_column`)."""
    def first(st, path):
        return (json_at(st.first("base")["rev"], path) or {}) if st.has("base") else {}

    def svm(st, key, peer="svm"):
        v = [(peer_of(st.records[n]["rev"]).get(peer) or {}).get(key) for n in st.by_setting.get("base", [])]
        v = [float(x) for x in v if isinstance(x, (int, float))]
        return fmt(float(np.mean(v))) if v else "n/a"

    d = [st.first("base")["params"].get("data", {}) if st.has("base") else {} for st in sts]
    contrast = [first(st, "metrics/data.json").get("defect_contrast") or {} for st in sts]
    classes = sorted(set(contrast[0]) | set(contrast[1]))
    rows = [("parts, image size", [f"{st.parts('base')}, {x.get('image_size', 'n/a')} px" for st, x in zip(sts, d)]),
            ("training seeds of the baseline", [str(st.seeds("base")) for st in sts]),
            ("Cycles samples", ["(2-D)", str((d[1].get("blender") or {}).get("samples", "n/a"))]),
            ("ViT test accuracy, baseline", [st.cell("base", "accuracy") for st in sts]),
            ("the same, seed by seed", [", ".join(fmt(x) for x in st.values("base", "accuracy")) for st in sts]),
            ("ViT test macro-F1, baseline", [st.cell("base", "macro_f1") for st in sts]),
            ("RT+SVM peer test accuracy", [svm(st, "accuracy") for st in sts]),
            ("CNN peer test accuracy", [svm(st, "accuracy", "cnn") for st in sts]),
            *[(f"defect contrast in the composite, {c}", [fmt(x.get(c)) for x in contrast]) for c in classes]]
    if kept:
        rows = [(label, ((kept.get(label) or [label, a])[1], b)) for label, (a, b) in rows]
    return [f"| {label} | {a} | {b} |" for label, (a, b) in rows]


def renderer_sections(st: Study, previous: dict[str, str | None] | None = None) -> list[str]:
    """Every renderer's block (between its markers), from the experiments of that renderer; [] when none ran.
    ``st``: the report's study of every run, whose settings (``base``, ``epochs5`` ...) are the 2-D runs'.
    ``previous``: renderer -> its block in the report as it was, whose 2-D column is kept where ``st`` holds no 2-D
    run (``study run --plan blender`` rewrites the renderer's block alone)."""
    lines = []
    for renderer in RENDERERS:
        own = of_renderer(st.records, renderer)
        if own:
            kept = two_d_column((previous or {}).get(renderer) or "") if not st.has("base") else None
            lines += renderer_block(st, Study(own, st.figure_dir, st.rel, prefix=f"{renderer}_"), renderer, kept)
    return lines


def two_d_column(block: str) -> dict[str, list[str]]:
    """The cells of a renderer block's two tables ({first cell: its row's cells}), to keep the 2-D column when the 2-D
    runs are not among the experiments a report is built from."""
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) >= 3 and not set(cells[0]) <= set("-: "):
            rows.setdefault(cells[0], cells)
    return rows


def renderer_block(flat: Study, st: Study, renderer: str, kept: dict[str, list[str]] | None = None) -> list[str]:
    label = LABELS.get(renderer, renderer)
    begin, end = markers(renderer)
    lines = [begin, f"## The findings on {label} parts (`data.renderer: {renderer}`)", "",
             f"`study run --plan {renderer}` runs the baseline and the settings F1, F2, F3 and F6 judge on {label} parts "
             f"({len(st.records)} experiments, `dvc exp show` names `{PREFIX}{renderer}-*`; training seeds: "
             + ", ".join(f"{k} {st.seeds(k)}" for k in st.by_setting) + "). The data seed is the same, so both renderers draw the "
             "same classes, defects and nuisances for a part; every other param is the 2-D study's. The answers side by side:", "",
             f"| finding | compared | 2-D renderer | {label} | answer, 2-D | answer, {label} | changes with the renderer? |",
             "|---|---|---|---|---|---|---|"]
    moved = {}
    for finding, what in COMPARED.items():
        (a, wa), (b, wb) = summary(flat, finding), summary(st, finding)
        if kept and len(kept.get(finding, [])) >= 5:  # the 2-D answer as the report last had it
            a, wa = kept[finding][2], kept[finding][4]
        lines.append(f"| {finding} | {what} | {a} | {b} | {wa} | {wb} | {changed(wa, wb)} |")
        moved.setdefault(changed(wa, wb).split(":")[0].strip("*"), []).append(finding)
    lines += ["", "**Which findings change with the renderer:** " + "; ".join(
        f"{word} for {', '.join(fs)}" for word, fs in (("changed", moved.get("yes")), ("unchanged", moved.get("no")),
                                                        ("cannot tell", moved.get("cannot tell"))) if fs) + "."]
    lines += ["", "F1-F3: *yes*, *no*, *within noise* and *not judged* as in the claims table above. F6 counts seeds: *yes* (or "
              "*no*) when every seed is beyond the interval that way, *mostly yes* (*mostly no*) when more seeds are, *within noise* "
              "otherwise. What each renderer's baseline is:", "", f"| | 2-D renderer | {label} |", "|---|---:|---:|",
              *context_rows([flat, st], kept), ""]
    if kept:
        lines += ["The 2-D column is the report's as it was: its runs are not among the experiments this block was built "
                  f"from (`study run --plan {renderer}` rewrites this block alone).", ""]
    for section in (f1_epochs, f2_passed_ratio, f3_raw_vs_nsoartc, f6_peer):
        lines += [f"#{line} ({label} parts)" if line.startswith("## ") else line for line in section(st)]
    return lines + [end, ""]

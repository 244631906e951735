"""reports/study.md: the findings in order, the pretrained-start block, the table of all runs; figures beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path, write_text
from vitinspect.study.claims import claims_table
from vitinspect.study.findings import FINDINGS, Study, fmt, f6_peer
from vitinspect.study.plan import PREFIX, RENDERERS, renderer_of
from vitinspect.study.pretrained import PT_BEGIN, PT_END, pretrained_sections
from vitinspect.study.pretrained_raw import RAW_BEGIN, RAW_END, raw_sections
from vitinspect.study.renderers import markers, renderer_sections
from vitinspect.study.runs import collect, recorded_overrides


def json_file(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def all_runs(st: Study) -> list[str]:
    lines = ["## All runs", "", "| experiment | rev | seed | parts | accuracy | macro-F1 | passed recall | relevance mass |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    return lines + [f"| {n} | {st.records[n]['rev'][:7]} | {n.rsplit('-s', 1)[1]} | {parts(st.records[n])} | {fmt(st.figs[n]['accuracy'])} | "
                    f"{fmt(st.figs[n]['macro_f1'])} | {fmt(st.figs[n]['passed_recall'])} | {fmt(st.figs[n]['relevance_mass'])} |"
                    for n in sorted(st.records)]


def parts(record: dict) -> str:
    n = record["params"].get("data", {}).get("n_images")
    return f"{int(n):,}" if isinstance(n, (int, float)) else "n/a"


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


def pretrained_start(st: Study) -> list[str]:
    """F4, F5 and label efficiency from the MAE-pretrained start (issue 17), between markers."""
    return pretrained_sections(st.records, st.figure_dir, st.rel)


def header(st: Study, overrides: dict, timing: list[dict]) -> list[str]:
    """What every reader needs first: how many runs, the default size, how differences are judged, the base
    overrides (``study run --set``) and what the runs cost."""
    d = st.first("base")["params"].get("data", {}) if st.has("base") else {}
    lines = ["# The study: the source's findings, measured", "",
             f"{len(st.records)} experiments (`dvc exp show` names `{PREFIX}*`). Every row gives its training seeds and its data "
             f"size (parts); findings run at the default size ({parts({'params': {'data': d}})} parts, {d.get('image_size', 'n/a')} px) unless a row "
             "says otherwise. A difference is called real only beyond the spread of the settings compared (half the range of each "
             "setting's seeds, the larger of the two); a setting run with one seed is described, not judged.", ""]
    if overrides:
        lines += ["Base overrides applied to every experiment (`study run --set`): "
                  + ", ".join(f"`{k}={v}`" for k, v in sorted(overrides.items())) + ".", ""]
    for t in timing:
        per = [v for v in (t.get("per_experiment_s") or {}).values() if isinstance(v, (int, float))]
        if per:
            lines += [f"`study run --plan {','.join(t.get('plans', []))} --seeds {t.get('seeds')}`: {t.get('experiments')} experiments in "
                      f"{t.get('wall_s', 0) / 60:.0f} min on this machine (median {float(np.median(per)):.0f} s per experiment, "
                      f"{t.get('queue_s', 0):.0f} s to queue them).", ""]
    return lines + claims_table()


def build_report(records: dict[str, dict], figure_dir: Path, rel: str, overrides: dict | None = None,
                 timing: list[dict] | None = None, kept: dict | None = None) -> str:
    """reports/study.md as text; figures are written into figure_dir (linked as rel/<name>).

    kept: marked blocks of the previous report to keep where these records do not hold their runs
    (e.g. the NSOARTC-pretrained sections, run by their own plan): {begin marker: text}.
    """
    st = Study(records, figure_dir, rel)
    lines = header(st, overrides or {}, timing or [])
    for finding in FINDINGS:
        lines += finding(st)
    block = pretrained_start(st)
    has_pt = any(n.startswith(f"{PREFIX}pt-") for n in records)
    lines += block if has_pt or not (kept or {}).get(PT_BEGIN) else [annotate_kept(kept[PT_BEGIN]), ""]
    lines += raw_sections(records, figure_dir, rel) or ([kept[RAW_BEGIN], ""] if (kept or {}).get(RAW_BEGIN) else [])
    lines += renderer_sections(st)
    for renderer in RENDERERS:  # a renderer whose runs are not among these records keeps its earlier block
        if not any(renderer_of(n) == renderer for n in records) and (kept or {}).get(markers(renderer)[0]):
            lines += [kept[markers(renderer)[0]], ""]
    return "\n".join(lines + all_runs(st)) + "\n"


KEPT = ("*Kept as an earlier `study run --plan pretrain` wrote it (issue 17): its runs are not among this report's "
        "experiments, and its rows predate the seeds and parts columns; docs/study.md (\"A pretrained start\") gives its "
        "data size and seeds. Rerun that plan to regenerate the block at this report's size.*")


def annotate_kept(block: str) -> str:
    """A block kept from the previous report, marked as such (once)."""
    begin, rest = block.split("\n", 1)
    return block if KEPT in block else f"{begin}\n{KEPT}\n\n{rest}"


def marked_block(text: str, begin: str, end: str) -> str | None:
    """The block between two markers of a report, markers included; None if it has none."""
    if begin in text and end in text:
        return begin + text.split(begin, 1)[1].split(end, 1)[0] + end
    return None


def splice_marked(old: str, block: list[str], begin: str = PT_BEGIN, end: str = PT_END) -> str:
    """Replace a marked block of a report (or insert it before '## All runs')."""
    new = "\n".join(block).rstrip("\n")
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        return head + new + rest.split(end, 1)[1]
    at = old.find("## All runs")
    return (old[:at] + new + "\n\n" + old[at:]) if at >= 0 else old.rstrip("\n") + "\n\n" + new + "\n"


def write_report(out: Path, only: str | None = None, all_commits: bool = False) -> None:
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
            text = old
            if any(n.startswith(f"{PREFIX}pt-") for n in records):
                text = splice_marked(text, pretrained_sections(records, tmp, fig_dir.name))
            raw = raw_sections(records, tmp, fig_dir.name)
            if raw:
                text = splice_marked(text, raw, RAW_BEGIN, RAW_END)
        write_text(out, text)
        print(f"study: pretrained-start sections from {len(records)} experiments -> {out}")
        return
    if only == "renderers":  # rewrite the renderers' blocks alone (study run --plan blender); the 2-D findings stay
        fig_dir = out.with_suffix("")
        old = out.read_text() if out.exists() else "# The study: the source's findings, measured\n"
        previous = {r: marked_block(old, *markers(r)) for r in RENDERERS}
        with atomic_path(fig_dir, is_dir=True) as tmp:
            if fig_dir.is_dir():
                shutil.copytree(fig_dir, tmp, dirs_exist_ok=True)
            text = old
            for renderer in RENDERERS:
                mine = {n: r for n, r in records.items() if renderer_of(n) in (None, renderer)}
                block = renderer_sections(Study(mine, tmp, fig_dir.name), previous)
                if block:
                    text = splice_marked(text, block, *markers(renderer))
        write_text(out, text)
        print(f"study: the renderers' sections from {len(records)} experiments -> {out}")
        return
    fig_dir = out.with_suffix("")
    old = out.read_text() if out.exists() else ""
    kept = {b: marked_block(old, b, e) for b, e in ((PT_BEGIN, PT_END), (RAW_BEGIN, RAW_END), *map(markers, RENDERERS))}
    log = out.with_suffix(".runs.json")
    timing = [r for r in (json_file(log) or {}).get("runs", []) if isinstance(r, dict)]
    with atomic_path(fig_dir, is_dir=True) as tmp:
        for name in ("pt_reconstruction_pt-full.png", "pt_reconstruction_pt-big.png", "pt_label_efficiency.png"):
            if kept[PT_BEGIN] and (fig_dir / name).is_file():  # the kept block's figures stay beside it
                shutil.copy2(fig_dir / name, tmp / name)
        for renderer in RENDERERS:
            if kept[markers(renderer)[0]] and fig_dir.is_dir():
                for png in fig_dir.glob(f"{renderer}_*.png"):
                    shutil.copy2(png, tmp / png.name)
        text = build_report(records, tmp, fig_dir.name, recorded_overrides(log), timing, kept)
    write_text(out, text)
    print(f"study: {len(records)} experiments -> {out}")

"""reports/study.md: the findings in order, the pretrained-start block, the table of all runs; figures beside it."""

from __future__ import annotations

from pathlib import Path

from vitinspect.errors import VitinspectError
from vitinspect.study.findings import FINDINGS, Study, fmt, f6_peer
from vitinspect.study.plan import PREFIX
from vitinspect.study.pretrained import PT_BEGIN, PT_END, pretrained_sections
from vitinspect.study.runs import collect


def all_runs(st: Study) -> list[str]:
    lines = ["## All runs", "", "| experiment | rev | accuracy | macro-F1 | passed recall | relevance mass |", "|---|---|---:|---:|---:|---:|"]
    return lines + [f"| {n} | {st.records[n]['rev'][:7]} | {fmt(st.figs[n]['accuracy'])} | {fmt(st.figs[n]['macro_f1'])} | "
                    f"{fmt(st.figs[n]['passed_recall'])} | {fmt(st.figs[n]['relevance_mass'])} |" for n in sorted(st.records)]


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

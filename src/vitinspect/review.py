"""`make report`: compare the workspace with a base revision, for a pull request.

Writes ``reports/pr.md`` (dvc metrics diff, dvc params diff, a verdict on escape rate
and macro-F1) and ``reports/pr_confusion.png`` (base and workspace confusion matrices
side by side). Works offline, from git and the metrics files alone.

    python -m vitinspect.review --base main

With ``--comment``, also the body of the pull-request comment that
.github/workflows/pr-comment.yml posts (see ``comment_body``): the report behind a hidden
marker that finds the comment again on the next push, its images linked by absolute URL.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from vitinspect.cli import output_path, run_command
from vitinspect.errors import VitinspectError

EVAL = "metrics/eval.json"
CONFUSION = "metrics/confusion_matrix.json"
PEER = "metrics/baseline.json"  # the RT+SVM peer, same keys as EVAL


def at_revision(rev: str, path: str):
    """A JSON file as committed at ``rev``; None if it is not there."""
    text = run_command(["git", "show", f"{rev}:{path}"], check=False)
    return json.loads(text) if text.strip() else None


def in_workspace(path: str):
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def verdict(name: str, base, new, lower_is_better: bool, tol: float = 1e-9) -> str:
    """'better', 'worse' or 'unchanged' with both values, for one figure."""
    if base is None or new is None:
        return f"- **{name}**: not comparable (base {base}, workspace {new})"
    if abs(new - base) <= tol:
        word = "unchanged"
    else:
        improved = new < base if lower_is_better else new > base
        word = "better" if improved else "worse"
    return f"- **{name}**: {word} ({base:.4f} -> {new:.4f})"


def _table_or(md: str, empty: str) -> str:
    """dvc prints a bare header when nothing changed: say so instead."""
    rows = [line for line in md.strip().splitlines() if line.startswith("|")]
    return md.strip() if len(rows) > 2 else empty


def build_report(base: str, metrics_md: str, params_md: str, base_eval, new_eval, figure: str | None) -> str:
    lines = [f"# vitinspect: workspace vs `{base}`", "", "## Verdict", ""]
    lines.append(verdict("escape rate", (base_eval or {}).get("escape_rate"), (new_eval or {}).get("escape_rate"), lower_is_better=True))
    lines.append(verdict("macro-F1", (base_eval or {}).get("macro_f1"), (new_eval or {}).get("macro_f1"), lower_is_better=False))
    lines += ["", "## Metrics (`dvc metrics diff`)", "", _table_or(metrics_md, "No metric changed."), "",
              "## Params (`dvc params diff --deps`)", "", _table_or(params_md, "No param changed."), ""]
    if figure:
        lines += ["## Confusion matrices (test split)", "", f"![base vs workspace]({figure})", ""]
    return "\n".join(lines)


# The headline rows that decide whether the ViT earns its keep against the classical peer:
# (label, how to read it from an eval-shaped dict, lower is better).
PEER_ROWS = (
    ("accuracy", lambda m: m.get("accuracy"), False),
    ("macro-F1", lambda m: m.get("macro_f1"), False),
    ("escape rate", lambda m: m.get("escape_rate"), True),
    ("false-reject rate", lambda m: m.get("false_reject_rate"), True),
    ("passed recall", lambda m: (m.get("per_class") or {}).get("passed", {}).get("recall"), False),
    ("X<->Y confusion (tilt_x as tilt_y)", lambda m: (m.get("xy_confusion") or {}).get("tilt_x_as_tilt_y"), True),
    ("X<->Y confusion (tilt_y as tilt_x)", lambda m: (m.get("xy_confusion") or {}).get("tilt_y_as_tilt_x"), True),
)


def peer_section(vit_eval, peer_eval, title: str = "ViT vs the RT+SVM peer (workspace, test split)") -> str:
    """Markdown: the ViT and the classical peer on the headline rows, with which one is ahead.

    vit_eval, peer_eval: dicts shaped like metrics/eval.json (metrics/baseline.json is). Empty when
    either is missing, so a report from a revision without the peer stays as it was.
    """
    if not vit_eval or not peer_eval:
        return ""
    lines = [f"## {title}", "", "| figure | ViT | RT+SVM | ahead |", "|---|---:|---:|---|"]
    for label, get, lower in PEER_ROWS:
        a, b = get(vit_eval), get(peer_eval)
        if a is None or b is None:
            ahead = "n/a"
        elif abs(a - b) <= 1e-9:
            ahead = "tie"
        else:
            ahead = "ViT" if (a < b) == lower else "RT+SVM"
        fmt = (lambda v: "n/a" if v is None else f"{v:.4f}")
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ahead} |")
    n = vit_eval.get("n")
    lines += ["", f"Both on the same {n} test parts; the peer's fit and predict times are in reports/baseline.json.", ""]
    return "\n".join(lines)


# The first line of the one comment per pull request; pr-comment.yml finds the comment by it.
COMMENT_MARKER = "<!-- vitinspect-pr-report -->"
# GitHub refuses a comment over 65,536 characters; keep room for the marker and the footer.
COMMENT_LIMIT = 60_000
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def comment_body(report_md: str, image_url_base: str | None, head_sha: str | None = None,
                 run_url: str | None = None, limit: int = COMMENT_LIMIT) -> str:
    """The report as a pull-request comment: marker first, images by absolute URL, a footer.

    A relative image link (``![x](pr_confusion.png)``) does not render in a comment: it becomes
    ``<image_url_base>/pr_confusion.png``, or a pointer to the run's artifact when there is no
    base. A report longer than ``limit`` is cut at a line, open ``<details>`` blocks are closed,
    and the comment says so.
    """
    def link(m: re.Match) -> str:
        alt, target = m.group(1), m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # already absolute
            return m.group(0)
        name = target.rsplit("/", 1)[-1]
        if image_url_base:
            return f"![{alt}]({image_url_base.rstrip('/')}/{name})"
        return f"*{alt}: `{name}` in the workflow run's artifact*"

    body = _IMAGE.sub(link, report_md.strip())
    if len(body) > limit:
        body = body[:limit].rsplit("\n", 1)[0]
        body += "\n" + "</details>\n" * max(0, body.count("<details>") - body.count("</details>"))
        body += "\n*Report cut to fit a comment: the whole `reports/pr.md` is in the workflow run's artifact.*"
    footer = []
    if head_sha:
        footer.append(f"commit {head_sha[:12]}")
    if run_url:
        footer.append(f"[workflow run and artifact]({run_url})")
    tail = ["", "---", f"<sub>Updated on each push: {' · '.join(footer)}</sub>"] if footer else []
    return "\n".join([COMMENT_MARKER, body, *tail]) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--out", default="reports/pr.md")
    ap.add_argument("--comment", help="also write the pull-request comment body here")
    ap.add_argument("--image-url-base", help="absolute https URL the comment's images are published under")
    ap.add_argument("--head-sha", help="the pull request's head commit, named in the comment")
    ap.add_argument("--run-url", help="the workflow run (and its artifact), linked from the comment")
    ap.add_argument("--peer", action="store_true", help="print only the ViT vs RT+SVM table of the workspace and stop (for make show)")
    args = ap.parse_args(argv)
    if args.peer:
        print(peer_section(in_workspace(EVAL), in_workspace(PEER)) or f"no {EVAL} or {PEER} in the workspace; run dvc repro")
        return
    for out in (args.out, args.comment):
        if out:
            output_path(out)  # inside the project, like every stage output
    if args.image_url_base and not args.image_url_base.startswith("https://"):
        raise VitinspectError(f"--image-url-base must be an https:// URL (got {args.image_url_base[:80]!r})")

    if not run_command(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], check=False).strip():
        raise VitinspectError(f"--base {args.base!r} is not a git revision here (fetch it, or pass --base)")
    metrics_md = run_command(["dvc", "metrics", "diff", args.base, "--md"])
    params_md = run_command(["dvc", "params", "diff", args.base, "--deps", "--md"])
    base_cm, new_cm = at_revision(args.base, CONFUSION), in_workspace(CONFUSION)

    from vitinspect.figures import confusion_pair
    from vitinspect.storage import save_figure, write_text

    out = Path(args.out)
    figure = None
    if base_cm or new_cm:
        png = out.with_name(out.stem + "_confusion.png")
        save_figure(confusion_pair(base_cm, new_cm, f"base ({args.base})", "workspace"), png)
        figure = png.name
    report = build_report(args.base, metrics_md, params_md, at_revision(args.base, EVAL), in_workspace(EVAL), figure)
    peer = peer_section(in_workspace(EVAL), in_workspace(PEER))
    report += ("\n" + peer) if peer else ""
    write_text(out, report)
    print(f"report: {out}")
    if args.comment:
        write_text(args.comment, comment_body(report, args.image_url_base, args.head_sha, args.run_url))
        print(f"comment: {args.comment}")


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])

"""`make report`: compare the workspace with a base revision, for a pull request.

Writes ``reports/pr.md`` (dvc metrics diff, dvc params diff, a verdict on escape rate
and macro-F1) and ``reports/pr_confusion.png`` (base and workspace confusion matrices
side by side). Works offline, from git and the metrics files alone.

    python -m vitinspect.review --base main
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vitinspect.cli import run_command
from vitinspect.errors import VitinspectError

EVAL = "metrics/eval.json"
CONFUSION = "metrics/confusion_matrix.json"


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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--out", default="reports/pr.md")
    args = ap.parse_args(argv)

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
    write_text(out, build_report(args.base, metrics_md, params_md, at_revision(args.base, EVAL), in_workspace(EVAL), figure))
    print(f"report: {out}")


if __name__ == "__main__":
    from vitinspect.cli import run_stage

    run_stage(main, sys.argv[1:])

"""`make report`: judge the workspace against a base revision, for a pull request.

Writes ``reports/pr.md`` and ``reports/pr_confusion.png`` (base and workspace confusion matrices side
by side). The verdict is on three figures at the operating point: the escape rate and the false-reject
rate on the production-like lot, and the defect macro-F1 on the test split. A change is called better
or worse only outside the noise:

- rates: a two-sided two-proportion z-test (pooled) on k of n, at the 5 % level;
- macro-F1: non-overlapping 95 % bootstrap intervals.

Otherwise it is "unchanged within noise". A class the model never predicts, or a rate of exactly 0 or 1,
is called out above the verdict. Works offline, from git and the files stage outputs commit.

    python -m vitinspect.review --base main

With ``--comment``, also the body of the pull-request comment that
.github/workflows/pr-comment.yml posts (:mod:`vitinspect.review.pr_comment`): the report behind a hidden
marker that finds the comment again on the next push, its images linked by absolute URL. Reading files
at a revision is in :mod:`vitinspect.review.revisions`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from vitinspect.core.errors import VitinspectError
from vitinspect.core.runtime import output_path, run_command
from vitinspect.core.storage import save_figure, write_text
from vitinspect.evaluation.decision import ALPHA, compare_intervals, compare_rates
from vitinspect.review.pr_comment import comment_body
from vitinspect.review.peer_table import CNN_PEER, PEER, peer_section
from vitinspect.review.revisions import at_revision, check_yaml_at_revision, in_workspace

EVALUATION = "reports/evaluation.json"
EVAL = "metrics/eval.json"  # the headline figures of the test split
CONFUSION = "metrics/confusion_matrix.json"
TRAIN = "metrics/train.json"  # the train stage's figures; its "collapsed" decides the verdict


def confusion_or_none(matrix: dict | None, where: str) -> dict | None:
    """A confusion matrix file ({labels, counts}) fit to draw, else one line naming it."""
    if matrix is None:
        return None
    labels, counts = matrix.get("labels"), matrix.get("counts")
    ok = (isinstance(labels, list) and 0 < len(labels) <= 100 and all(isinstance(x, str) for x in labels)
          and isinstance(counts, list) and len(counts) == len(labels)
          and all(isinstance(row, list) and len(row) == len(labels) and all(_count(v) for v in row) for row in counts))
    if not ok:
        raise VitinspectError(f"{where}: not a confusion matrix (labels: up to 100 names; counts: a square table of "
                              "counts, one row per label); fix or regenerate it (dvc repro)")
    return matrix


def _count(v) -> bool:
    """A finite, non-negative whole number (JSON may hold NaN, infinity, strings or fractions)."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            and float(v).is_integer())


def _fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


def counted_rate(r) -> dict | None:
    """A rate block {k, n, rate, low, high} whose k of n are finite counts (0 <= k <= n, n >= 1), else None:
    what is not a count cannot be tested for significance."""
    if not isinstance(r, dict) or not _count(r.get("k")) or not _count(r.get("n")) or not 1 <= r["n"] or r["k"] > r["n"]:
        return None
    if not all(_fraction(r.get(x)) for x in ("low", "high")):
        return {**r, "low": None, "high": None}
    return r


def interval(f) -> dict | None:
    """A figure {value, low, high} of finite fractions with low <= high, else None."""
    if not isinstance(f, dict) or not all(_fraction(f.get(x)) for x in ("value", "low", "high")) or f["low"] > f["high"]:
        return None
    return f


# --------------------------------------------------------------------------- formatting


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _rate_cell(r: dict | None, scale: float = 1.0, unit: str = "pct") -> str:
    """'2.11 % (38 of 1800; 95 % CI 1.54–2.89 %)' or '5,000 ppm (1 of 200; ...)'."""
    if not r or (isinstance(r, dict) and r.get("n") == 0):
        return "n/a"
    r = counted_rate(r)
    if r is None:
        return "n/a (not a count)"
    if r.get("low") is None:
        return f"{r['k']:.0f} of {r['n']:.0f}"
    if unit == "pct":
        fmt = _pct
    else:
        def fmt(x):
            return f"{scale * x:,.0f}"
    return f"{fmt(r['k'] / r['n'])} ({r['k']} of {r['n']}; 95 % CI {fmt(r['low'])}–{fmt(r['high'])})"


def _f1_cell(f: dict | None) -> str:
    if interval(f) is None:
        return "n/a"
    return f"{f['value']:.3f} (95 % CI {f['low']:.3f}–{f['high']:.3f})"


def _get(report: dict | None, *keys):
    node = report
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


def _table_or(md: str, empty: str) -> str:
    """dvc prints a bare header when nothing changed: say so instead."""
    rows = [line for line in md.strip().splitlines() if line.startswith("|")]
    return md.strip() if len(rows) > 2 else empty


# --------------------------------------------------------------------------- verdicts


def judged(report: dict | None, split: str):
    """The block a verdict is made on: the combined verdict's (gate and classifier, ``combined``) where the report has
    one, else the classifier's at its operating point (a report from before the gate)."""
    block = _get(report, split, "combined")
    return block if isinstance(block, dict) else _get(report, split, "operating_point")


def degenerate(report: dict | None) -> list[str]:
    """What makes a model's figures untrustworthy or extreme: classes never predicted, rates at 0 or 1."""
    notes = []
    for split in ("lot", "test"):
        block = judged(report, split)
        if not block:
            continue
        if not isinstance(block, dict):
            continue
        never = [c for c, n in _predicted(block).items() if n == 0]
        if never:
            n = block.get("n", sum(_predicted(block).values()))  # an unlabelled lot's block counts predictions only
            notes.append(f"{split}: the model never predicts {', '.join(f'`{c}`' for c in never)} ({n} parts)")
        for key, what in (("escape", "escape rate"), ("false_reject", "false-reject rate")):
            r = counted_rate(block.get(key)) or {}
            if r.get("n") and r["k"] in (0, r["n"]) and r.get("low") is not None:
                extreme = "0" if r["k"] == 0 else "1 (100 %)"
                notes.append(f"{split}: {what} is exactly {extreme}: {r['k']} of {r['n']}, "
                             f"95 % CI {_pct(r['low'])}–{_pct(r['high'])}")
    return notes


def _predicted(block) -> dict:
    """predicted_counts of a block, only the entries that are counts."""
    counts = block.get("predicted_counts") if isinstance(block, dict) else None
    return {c: n for c, n in counts.items() if _count(n)} if isinstance(counts, dict) else {}


def verdict_of(base: dict | None, new: dict | None, new_train: dict | None = None) -> dict:
    """The verdicts on the three judged figures and the overall word with its reasons.

    A figure whose k or n is not a finite count (NaN, infinity, negative, a fraction, a string, missing),
    on either side, is "not comparable": never better or worse. A workspace whose training collapsed
    (``"collapsed": true`` in ``new_train``, metrics/train.json) is called collapsed: none of its figures is compared."""
    if isinstance(new_train, dict) and new_train.get("collapsed") is True:
        f1 = _get(new_train, "val", "macro_f1")
        said = f"val macro-F1 {f1:.3f}" if _fraction(f1) else "val macro-F1"
        names = ("escape rate on the lot", "false-reject rate on the lot", "defect macro-F1 on test")
        return {"overall": "collapsed", "figures": {k: ("not compared", None) for k in names},
                "reasons": [f"training collapsed ({said} at or below that of predicting one class, `{TRAIN}`): "
                            "the model has not learnt, so its figures are not compared with the base's"]}
    b_lot, n_lot = judged(base, "lot"), judged(new, "lot")
    b_test, n_test = judged(base, "test"), judged(new, "test")
    esc, p_esc = compare_rates(counted_rate(_get(b_lot, "escape")), counted_rate(_get(n_lot, "escape")))
    fr, p_fr = compare_rates(counted_rate(_get(b_lot, "false_reject")), counted_rate(_get(n_lot, "false_reject")))
    f1 = compare_intervals(interval(_get(b_test, "macro_f1_defects")), interval(_get(n_test, "macro_f1_defects")),
                           higher_is_better=True)
    figures = {"escape rate on the lot": (esc, p_esc), "false-reject rate on the lot": (fr, p_fr),
               "defect macro-F1 on test": (f1, None)}
    worse = [k for k, (w, _) in figures.items() if w == "worse"]
    better = [k for k, (w, _) in figures.items() if w == "better"]
    # A class the workspace never predicts on the lot, where the base did, is worse whatever the rates say.
    lost = []
    if isinstance(b_lot, dict) and isinstance(n_lot, dict):
        lost = [c for c, n in _predicted(n_lot).items() if n == 0 and _predicted(b_lot).get(c, 0) > 0]
    reasons = [f"{k} worse" for k in worse] + [f"never predicts `{c}` on the lot (the base did)" for c in lost]
    if any(w == "not comparable" for w, _ in figures.values()) and not reasons:
        overall = "not comparable"
        which = [k for k, (w, _) in figures.items() if w == "not comparable"]
        reasons = [f"{', '.join(which)}: the base or the workspace has no finite counts for it in `reports/evaluation.json` "
                   "(missing, NaN, infinite, negative or not whole); rerun it with this pipeline"]
    elif reasons:
        overall = "worse"
        reasons += [f"{k} better" for k in better]
    elif better:
        overall = "better"
        reasons = [f"{k} better" for k in better]
    else:
        overall = "unchanged within noise"
        reasons = ["no judged figure moved beyond its noise"]
    return {"overall": overall, "reasons": reasons, "figures": figures}


def headline_rows(base: dict | None, new: dict | None, figures: dict) -> list[str]:
    """The headline table (<= 12 rows): operating point, lot rates, test figures."""

    def verdict(name):
        word, p = figures.get(name, ("", None))
        return f"**{word}**" + (f" (p = {p:.3g})" if p is not None and p == p else "")

    def row(label, b, n, v=""):
        return f"| {label} | {b} | {n} | {v} |"

    def both(*keys, cell=_rate_cell, **kw):
        if keys[1] == "judged":
            return cell(_get(judged(base, keys[0]), *keys[2:]), **kw), cell(_get(judged(new, keys[0]), *keys[2:]), **kw)
        return cell(_get(base, *keys), **kw), cell(_get(new, *keys), **kw)

    t = tuple(x if _fraction(x) else None for x in (_get(base, "operating_point", "threshold"), _get(new, "operating_point", "threshold")))
    g = tuple(x if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None
              for x in (_get(base, "gate", "threshold"), _get(new, "gate", "threshold")))
    lines = ["| figure (the verdict: the gate and the classifier combined, where there is a gate) | base | workspace | verdict |",
             "|---|---|---|---|",
             row(f"threshold t on p({_name(_get(new, 'operating_point', 'class'))}), chosen on val",
                 *(("n/a" if x is None else f"{x:.4g}") for x in t)),
             row("gate threshold on MD, from good parts only", *(("none" if x is None else f"{x:.4g}") for x in g))]
    lines.append(row("**lot**: escapes per million defective parts", *both("lot", "judged", "escape", scale=1e6, unit="ppm"),
                     verdict("escape rate on the lot")))
    lines.append(row("**lot**: false-reject rate on good parts", *both("lot", "judged", "false_reject"),
                     verdict("false-reject rate on the lot")))
    lines.append(row("lot: parts rejected per 1,000", *both("lot", "judged", "rejected", scale=1e3, unit="per1000")))
    lines.append(row("**test**: defect macro-F1", *both("test", "judged", "macro_f1_defects", cell=_f1_cell),
                     verdict("defect macro-F1 on test")))
    lines.append(row("test: escape rate", *both("test", "judged", "escape")))
    lines.append(row("test: false-reject rate", *both("test", "judged", "false_reject")))
    lines.append(row("lot, classifier alone: false-reject rate", *both("lot", "operating_point", "false_reject")))
    lines.append(row("lot, gate alone: escapes per million", *both("lot", "gate", "escape", scale=1e6, unit="ppm")))
    return lines


def _name(c) -> str:
    return c[:40] if isinstance(c, str) and c.isprintable() and "|" not in c else "passed"


def build_report(base: str, metrics_md: str, params_md: str, base_eval: dict | None, new_eval: dict | None,
                 figure: str | None, new_train: dict | None = None) -> str:
    """reports/pr.md as markdown. base_eval / new_eval: reports/evaluation.json at the base and in the workspace;
    new_train: the workspace's metrics/train.json."""
    j = verdict_of(base_eval, new_eval, new_train)
    lines = [f"# vitinspect: workspace vs `{base}`", ""]
    notes = degenerate(new_eval)
    if notes:
        lines += ["> [!WARNING]", "> **Degenerate figures in the workspace:**"] + [f"> - {n}" for n in notes] + [""]
    lines += [f"## Verdict: **{j['overall']}**", "", "; ".join(j["reasons"]) + ".", ""]
    lines += headline_rows(base_eval, new_eval, j["figures"])
    lines += ["", f"Rates: k of n with a 95 % Wilson interval; better/worse only when a two-sided two-proportion "
              f"z-test rejects equal rates at the {ALPHA:.0%} level. Defect macro-F1: better/worse only when the 95 % "
              "bootstrap intervals do not overlap. Otherwise: unchanged within noise.", ""]
    lines += ["## Params (`dvc params diff --deps`)", "", _table_or(params_md, "No param changed."), ""]
    if figure:
        lines += ["## Confusion matrices (test, operating point)", "", f"![base vs workspace]({figure})", ""]
    lines += ["<details><summary>All metrics (<code>dvc metrics diff --md</code>)</summary>", "",
              _table_or(metrics_md, "No metric changed."), "", "</details>", ""]
    return "\n".join(lines)


def folders_note(data: dict | None) -> str:
    """A line on the user's image folders (data.source folders): what was read, how many parts were skipped."""
    f = (data or {}).get("folders") if isinstance(data, dict) else None
    if not isinstance(f, dict):
        return ""
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    n = sum(sum(v for v in c.values() if _count(v)) for c in counts.values() if isinstance(c, dict))
    skipped = f.get("skipped", 0) if _count(f.get("skipped", 0)) else "?"
    return (f"\n## Data\n\n{n} parts read from image folders ({f.get('layout')} layout), "
            f"{skipped} skipped as bad{' (listed with their reasons in metrics/data.json)' if skipped else ''}; "
            f"{f.get('parts_with_mask', 0)} with a defect mask.\n")


def _dvc_diff(cmd: list[str], base: str) -> str:
    """A dvc diff's markdown; its failure is one line naming the revision and the files it reads."""
    try:
        return run_command(cmd)
    except VitinspectError as exc:
        raise VitinspectError(f"{' '.join(cmd[:3])} against revision {base} failed (it reads dvc.yaml, dvc.lock, params.yaml "
                              f"and the metrics files at {base} and here): {str(exc).split(' failed: ', 1)[-1][:200]}") from None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--out", default="reports/pr.md")
    ap.add_argument("--comment", help="also write the pull-request comment body here")
    ap.add_argument("--image-url-base", help="absolute https URL the comment's images are published under")
    ap.add_argument("--head-sha", help="the pull request's head commit, named in the comment")
    ap.add_argument("--run-url", help="the workflow run (and its artifact), linked from the comment")
    ap.add_argument("--peer", action="store_true", help="print only the ViT vs the peers (RT+SVM, CNN) table of the workspace and stop")
    args = ap.parse_args(argv)
    for option, path in (("--out", args.out), ("--comment", args.comment)):  # refused before any diff runs
        if path and (Path(path).is_dir() or Path(path).is_symlink()):
            raise VitinspectError(f"{option} {path}: is a folder or a link, not a file; give a file path (nothing was written)")
    if args.peer:
        print(peer_section(in_workspace(EVAL), in_workspace(PEER), in_workspace(CNN_PEER))
              or f"no {EVAL} or {PEER} in the workspace; run dvc repro")
        return
    for out in (args.out, args.comment):
        if out:
            output_path(out)  # inside the project, like every stage output
    if args.image_url_base and not args.image_url_base.startswith("https://"):
        raise VitinspectError(f"--image-url-base must be an https:// URL (got {args.image_url_base[:80]!r})")

    if not run_command(["git", "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"], check=False).strip():
        raise VitinspectError(f"--base {args.base!r} is not a git revision here (fetch it, or pass --base)")
    # Every input read and checked first (one line naming the file and revision), then dvc's diffs.
    base_eval, new_eval = at_revision(args.base, EVALUATION), in_workspace(EVALUATION)
    base_cm = confusion_or_none(at_revision(args.base, CONFUSION), f"{CONFUSION} at revision {args.base}")
    new_cm = confusion_or_none(in_workspace(CONFUSION), f"{CONFUSION} (workspace)")
    data, vit_eval, peer_eval = in_workspace("metrics/data.json"), in_workspace(EVAL), in_workspace(PEER)
    cnn_eval = in_workspace(CNN_PEER)
    new_train = in_workspace(TRAIN)
    for name in ("dvc.lock", "params.yaml", "dvc.yaml"):
        check_yaml_at_revision(args.base, name)
    metrics_md = _dvc_diff(["dvc", "metrics", "diff", args.base, "--md"], args.base)
    params_md = _dvc_diff(["dvc", "params", "diff", args.base, "--deps", "--md"], args.base)

    # Lazy: matplotlib would make --peer (make show), which draws nothing, 0.8 s slower (0.32 -> 1.12 s, median of 12).
    from vitinspect.visualization.figures import confusion_pair

    out = Path(args.out)
    figure = None
    if base_cm or new_cm:
        png = out.with_name(out.stem + "_confusion.png")
        save_figure(confusion_pair(base_cm, new_cm, f"base ({args.base})", "workspace"), png)
        figure = png.name
    report = build_report(args.base, metrics_md, params_md, base_eval, new_eval, figure, new_train)
    report += folders_note(data)
    peer = peer_section(vit_eval, peer_eval, cnn_eval)
    report += ("\n" + peer) if peer else ""
    write_text(out, report)
    print(f"report: {out}")
    if args.comment:
        write_text(args.comment, comment_body(report, args.image_url_base, args.head_sha, args.run_url))
        print(f"comment: {args.comment}")


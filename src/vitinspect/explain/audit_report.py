"""Markdown and one-line summaries built from stage results (plain dicts in, text out)."""

from __future__ import annotations


def _num(n) -> str:
    return f"{n:,}" if isinstance(n, int) else ("n/a" if n is None else f"{n:.4g}")


def audit_sentence(result: dict) -> str:
    """The study's form: total / trainable / share, then what the measured change adds."""
    m = result["model"]
    changes = [v["mean_relative_change"] for v in result["relative_change_by_group"].values() if v["mean_relative_change"] is not None]
    moved = [g for g, v in result["relative_change_by_group"].items() if (v["mean_relative_change"] or 0) > 0]
    spread = f"{min(changes):.3g} to {max(changes):.3g}" if changes else "n/a"
    return (
        f"audit: {m['total']:,} parameters, {m['trainable']:,} trainable: training can rewrite {m['trainable_pct']:.2f}% of the model "
        f"({m['source']}, {m['strategy']}). Measured, {len(moved)} of {len(result['relative_change_by_group'])} groups moved, "
        f"with a mean relative change ||W-W0||/||W0|| of {spread} per group: 'trainable' says what may change, "
        f"the relative change says how much did."
    )


def audit_markdown(result: dict) -> str:
    m = result["model"]
    lines = [
        "# Audit: how much of the model fine-tuning rewrites",
        "",
        audit_sentence(result).removeprefix("audit: "),
        "",
        "## Our model",
        "",
        "| total | trainable | frozen | trainable % |",
        "|---:|---:|---:|---:|",
        f"| {_num(m['total'])} | {_num(m['trainable'])} | {_num(m['frozen'])} | {m['trainable_pct']:.2f} |",
        "",
        "## Relative change per group",
        "",
        "| group | parameters | trainable | mean relative change | share of elements moved |",
        "|---|---:|---:|---:|---:|",
    ]
    counts = result["parameters_by_group"]
    for g, v in {**result["relative_change_by_group"], "head": result["head"]}.items():
        c = counts.get(g, {})
        lines.append(f"| {g} | {_num(c.get('total'))} | {_num(c.get('trainable'))} | {_num(v.get('mean_relative_change'))} | {_num(v.get('moved_share'))} |")
    lines += ["", f"The head: {result['head']['note']}.", "", "## Reference architectures (counted on the meta device)", "",
              "| model | total (1000 labels) | total (our labels) | full | head | last_blocks | lora |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["references"]:
        t = r["trainable"]
        cells = " | ".join(f"{_num(t[s]['trainable'])} ({t[s]['trainable_pct']:.2f}%)" for s in ("full", "head", "last_blocks", "lora"))
        lines.append(f"| {r['model']} | {_num(r['total_1000_labels'])} | {_num(r['total_our_labels'])} | {cells} |")
    return "\n".join(lines) + "\n"

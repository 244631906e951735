"""Stage `audit`: how much of the model fine-tuning can rewrite (counts) and did rewrite (weight change)."""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.explain.audit import by_group, count_parameters, headline, reference_table, weight_change
from vitinspect.visualization.figures import change_bars
from vitinspect.model.strategies import apply_strategy
from vitinspect.model.vit import load_trained, load_weights
from vitinspect.config.params import STRATEGIES, load_params
from vitinspect.explain.audit_report import audit_markdown, audit_sentence
from vitinspect.core.storage import all_or_nothing, save_figure, write_json, write_text


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--init", required=True, help="initial weights directory")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: headline (strategy, total, trainable share)")
    ap.add_argument("--details", required=True, type=runtime.output_path, help="JSON: counts, change per group, reference table")
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: relative change per block")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="Markdown tables")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    final = load_trained(args.model)
    init = load_trained(args.init)
    classes = [final.config.id2label[i] for i in range(final.config.num_labels)]
    counts = count_parameters(apply_strategy(init, params.finetune))
    changes = weight_change(load_weights(args.init), load_weights(args.model), params.audit.tolerance)
    groups = by_group(changes)
    result = {
        "model": {"source": params.model.source, "strategy": params.finetune.strategy, **{k: counts[k] for k in ("total", "trainable", "frozen", "trainable_pct")}},
        "parameters_by_group": counts["groups"],
        "relative_change_by_group": {g: v for g, v in groups.items() if g != "head"},
        "head": {**groups.get("head", {}), "note": "freshly initialised for our classes: its W0 is random, so its change is reported apart"},
        "references": reference_table(params.audit.reference_models, len(classes), params.finetune, STRATEGIES),
    }
    with all_or_nothing():
        write_json(args.details, result)
        write_json(args.metrics, headline(result))
        save_figure(change_bars(groups), args.figure)
        write_text(args.report, audit_markdown(result))
    print(audit_sentence(result))


if __name__ == "__main__":
    runtime.run_stage(main)

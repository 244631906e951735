"""Stage `audit`: how much of the model fine-tuning can rewrite (counts) and did rewrite (weight change)."""

from __future__ import annotations

import argparse
import dataclasses

from safetensors.torch import load_file

from vitinspect import cli
from vitinspect.audit import by_group, count_parameters, headline, meta_model, reference_config, weight_change
from vitinspect.errors import VitinspectError
from vitinspect.figures import change_bars
from vitinspect.model import apply_strategy, load_trained
from vitinspect.params import STRATEGIES, load_params
from vitinspect.reports import audit_markdown, audit_sentence
from vitinspect.storage import save_figure, write_json, write_text


def load_state(path: str) -> dict:
    try:
        return load_file(f"{path}/model.safetensors")
    except (OSError, ValueError) as exc:
        raise VitinspectError(f"{path}/model.safetensors: cannot read weights ({exc})") from None


def reference_table(names, n_labels: int, finetune) -> list[dict]:
    """Total counts for 1000 and our labels, and the trainable count under every strategy."""
    rows = []
    for name in names:
        try:
            cfg_ours = reference_config(name, n_labels)
            total_1000 = count_parameters(meta_model(reference_config(name, 1000)))["total"]
        except (OSError, ValueError) as exc:
            raise VitinspectError(f"params.yaml: audit.reference_models entry {name!r}: {exc}") from None
        row = {"model": name, "total_1000_labels": total_1000, "total_our_labels": count_parameters(meta_model(cfg_ours))["total"], "trainable": {}}
        for strategy in STRATEGIES:
            ft = dataclasses.replace(finetune, strategy=strategy, last_blocks=min(finetune.last_blocks, cfg_ours.num_hidden_layers))
            c = count_parameters(apply_strategy(meta_model(cfg_ours), ft))
            row["trainable"][strategy] = {"trainable": c["trainable"], "trainable_pct": c["trainable_pct"]}
        rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--init", required=True, help="initial weights directory")
    ap.add_argument("--metrics", required=True, type=cli.output_path, help="JSON: headline (strategy, total, trainable share)")
    ap.add_argument("--details", required=True, type=cli.output_path, help="JSON: counts, change per group, reference table")
    ap.add_argument("--figure", required=True, type=cli.output_path, help="PNG: relative change per block")
    ap.add_argument("--report", required=True, type=cli.output_path, help="Markdown tables")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    final = load_trained(args.model)
    init = load_trained(args.init)
    classes = [final.config.id2label[i] for i in range(final.config.num_labels)]
    counts = count_parameters(apply_strategy(init, params.finetune))
    changes = weight_change(load_state(args.init), load_state(args.model), params.audit.tolerance)
    groups = by_group(changes)
    result = {
        "model": {"source": params.model.source, "strategy": params.finetune.strategy, **{k: counts[k] for k in ("total", "trainable", "frozen", "trainable_pct")}},
        "parameters_by_group": counts["groups"],
        "relative_change_by_group": {g: v for g, v in groups.items() if g != "head"},
        "head": {**groups.get("head", {}), "note": "freshly initialised for our classes: its W0 is random, so its change is reported apart"},
        "references": reference_table(params.audit.reference_models, len(classes), params.finetune),
    }
    write_json(args.details, result)
    write_json(args.metrics, headline(result))
    save_figure(change_bars(groups), args.figure)
    write_text(args.report, audit_markdown(result))
    print(audit_sentence(result))


if __name__ == "__main__":
    cli.run_stage(main)

"""Stage `evaluate`: choose the operating point on val, then judge the test split and the production-like lot.

The operating point (the threshold t on p(passed)) goes with the model into models/operating_point.json.
Headline figures: metrics/eval.json (test) and metrics/lot.json (lot), both from
decision.evaluation_summary; every rate with k of n and its 95 % Wilson interval in reports/evaluation.json.
"""

from __future__ import annotations

import functools

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, dataset_meta, load_dataset_dir, save_figure, write_json
from vitinspect.data.arrow import MappedImages, columns
from vitinspect.evaluation.evaluate import evaluate, lot_split
from vitinspect.model.prediction import model_and_test_split, predict_images
from vitinspect.visualization.figures import confusion_figure


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory (val and test splits)")
    ap.add_argument("--lot", required=True, help="the lot stage's dataset directory")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--operating-point", required=True, type=runtime.output_path, help="JSON: the threshold deployed with the model")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: headline figures on the test split")
    ap.add_argument("--lot-metrics", required=True, type=runtime.output_path, help="JSON: headline figures on the lot")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="JSON: every figure with k of n and a 95%% interval (val, test, lot)")
    ap.add_argument("--confusion-matrix", required=True, type=runtime.output_path, help="JSON: labels, counts, row-normalised (test, operating point)")
    ap.add_argument("--confusion-records", required=True, type=runtime.output_path, help="JSON: one {actual, predicted} per test part, for dvc plots")
    ap.add_argument("--predictions", required=True, type=runtime.output_path, help="CSV: id, label, predicted, probabilities (test)")
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: the confusion matrix with counts (test, operating point)")
    ap.add_argument("--roc", required=True, type=runtime.output_path, help="JSON: ROC of defect detection on the lot, for dvc plots")
    ap.add_argument("--pr", required=True, type=runtime.output_path, help="JSON: precision-recall of defect detection on the lot")
    ap.add_argument("--lot-summary", required=True, type=runtime.output_path,
                    help="JSON: the lot's size, seed and class counts, as the lot stage recorded them with its parts")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p = params.evaluate
    runtime.set_threads(params.train.threads)
    # Images stay in the memory-mapped Arrow files (uint8); each batch is converted on its own.
    model, input_name, spec, classes, cols = model_and_test_split(args.data, args.model, ["id", "label"], mapped=True)
    val_ds = load_dataset_dir(args.data)["val"]
    val = {**columns(val_ds, ["label"]), input_name: MappedImages(val_ds, input_name)}
    lot_meta = dataset_meta(args.lot)
    lot = lot_split(args.lot, lot_meta, input_name, classes, cols[input_name].shape[1:])
    proba = functools.partial(predict_images, model, spec=spec, batch_size=p.batch_size)
    sets = {"val": (val["label"].astype(int), proba(val[input_name])),
            "test": (cols["label"].astype(int), proba(cols[input_name])),
            "lot": (lot["label"].astype(int), proba(lot[input_name]) if len(lot["label"]) else np.zeros((0, len(classes))))}
    ev = evaluate(sets, cols["id"], classes, params.data.good_class, p, lot_meta.get("note"), args.data)

    with all_or_nothing():  # every output or none: a full disk or read-only directory leaves the old ones
        write_json(args.operating_point, ev.operating_point)
        with atomic_path(args.predictions) as tmp:
            ev.predictions.to_csv(tmp, index=False)
        write_json(args.confusion_records, ev.confusion_records)
        write_json(args.confusion_matrix, ev.confusion_matrix)
        save_figure(confusion_figure(ev.confusion_matrix, f"test confusion matrix (operating point t={ev.operating_point['threshold']:.3g})"),
                    args.figure)
        write_json(args.roc, ev.roc)
        write_json(args.pr, ev.pr)
        write_json(args.report, ev.report)
        write_json(args.lot_metrics, ev.lot_metrics)
        write_json(args.metrics, ev.metrics)
        write_json(args.lot_summary, lot_meta.get("summary") or {"note": "the lot stage recorded no summary; run dvc repro lot"})
    print(ev.line)


if __name__ == "__main__":
    runtime.run_stage(main)

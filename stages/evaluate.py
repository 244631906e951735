"""Stage `evaluate`: choose the operating point on val, then judge the test split and the production-like lot.

The operating point (the threshold t on p(passed)) goes with the model into models/operating_point.json; the
unit-space gate, fitted and thresholded on good parts alone, into models/gate.npz. Headline figures (the combined
verdict's, the classifier's beside them): metrics/eval.json (test) and metrics/lot.json (lot), from
verdict.headline; every rate with k of n and its 95 % Wilson interval in reports/evaluation.json.
"""

from __future__ import annotations

import functools

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, dataset_meta, load_dataset_dir, save_figure, write_json
from vitinspect.data.arrow import MappedImages, columns
from vitinspect.evaluation.evaluate import evaluate, lot_split
from vitinspect.evaluation.gate import gate_and_scores, moves_from, save_gate
from vitinspect.model.prediction import model_and_test_split, predict_images
from vitinspect.visualization.figures import confusion_figure


OUTPUTS = {  # every output, each written by this stage only
    "--operating-point": "JSON: the threshold deployed with the model",
    "--gate": "NPZ: the unit-space gate, fitted and thresholded on good parts only",
    "--metrics": "JSON: headline figures on the test split (the combined verdict's, the classifier's beside them)",
    "--lot-metrics": "JSON: headline figures on the lot",
    "--report": "JSON: every figure with k of n and a 95%% interval (val, test, lot; classifier, gate, combined)",
    "--confusion-matrix": "JSON: labels, counts, row-normalised (test, operating point)",
    "--confusion-records": "JSON: one {actual, predicted} per test part, for dvc plots",
    "--predictions": "CSV: id, label, predicted, probabilities, gate score, verdict (test)",
    "--figure": "PNG: the confusion matrix with counts (test, operating point)",
    "--roc": "JSON: ROC of defect detection on the lot, for dvc plots",
    "--gate-roc": "JSON: ROC of the gate on the lot, for dvc plots",
    "--pr": "JSON: precision-recall of defect detection on the lot",
    "--lot-summary": "JSON: the lot's size, seed and class counts, as the lot stage recorded them with its parts",
}


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory (val and test splits)")
    ap.add_argument("--lot", required=True, help="the lot stage's dataset directory")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--unit-space", required=True, help="nsoartc's unit space (.npz): the gate moves good parts against it")
    for flag, what in OUTPUTS.items():
        ap.add_argument(flag, required=True, type=runtime.output_path, help=what)
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
    moves = moves_from(args.unit_space, params.nsoartc.gain, params.nsoartc.eps, params.gate.shift_px)
    gate, gate_scores = gate_and_scores(args.data, lot["nsoartc"], classes.index(params.data.good_class), params.data.grid,
                                        params.gate.false_reject_rate, moves)
    proba = functools.partial(predict_images, model, spec=spec, batch_size=p.batch_size)
    sets = {"val": (val["label"].astype(int), proba(val[input_name])),
            "test": (cols["label"].astype(int), proba(cols[input_name])),
            "lot": (lot["label"].astype(int), proba(lot[input_name]) if len(lot["label"]) else np.zeros((0, len(classes))))}
    ev = evaluate(sets, cols["id"], classes, params.data.good_class, p, lot_meta.get("note"), args.data, gate, gate_scores)

    with all_or_nothing():  # every output or none: a full disk or read-only directory leaves the old ones
        write_json(args.operating_point, ev.operating_point)
        save_gate(gate, args.gate)
        write_json(args.gate_roc, ev.gate_roc)
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

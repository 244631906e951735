"""Stage `evaluate`: choose the operating point on val, then judge the test split and the production-like lot.

The operating point (the threshold t on p(passed)) goes with the model into models/operating_point.json.
Headline figures: metrics/eval.json (test) and metrics/lot.json (lot), both from
decision.evaluation_summary; every rate with k of n and its 95 % Wilson interval in reports/evaluation.json.
"""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np
import pandas as pd

from vitinspect.data.arrow import MappedImages, columns, label_names
from vitinspect.evaluation.decision import (UNSCORED, curves, decide, evaluation_detail, operating_point, summary_of, unscored_detail,
                                 unscored_summary)
from vitinspect.core.errors import VitinspectError
from vitinspect.visualization.figures import confusion_figure
from vitinspect.model.prediction import model_and_test_split, predict_images
from vitinspect.evaluation.metrics import confusion
from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, dataset_meta, load_dataset_dir, save_figure, write_json

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
    if lot_meta["rows"].get("lot") == 0:  # no lot (data.source folders with lot.source render): nothing to read
        lot = {"label": np.zeros(0, dtype=np.int64), input_name: np.zeros((0, *cols[input_name].shape[1:]), np.uint8)}
    else:
        lot_ds = load_dataset_dir(args.lot, splits=("lot",))["lot"]
        if label_names(lot_ds) != classes:
            raise VitinspectError(f"{args.lot}: lot classes {label_names(lot_ds)} differ from the data's {classes}; run dvc repro")
        lot = {**columns(lot_ds, ["label"]), input_name: MappedImages(lot_ds, input_name)}
    if lot[input_name].shape[1:] != cols[input_name].shape[1:]:
        raise VitinspectError(f"{args.lot}: lot images {lot[input_name].shape[1:]} differ from the test split's; run dvc repro")

    def proba(images):
        return predict_images(model, images, spec, p.batch_size)

    n_lot = len(lot["label"])
    sets = {"val": (val["label"].astype(int), proba(val[input_name])),
            "test": (cols["label"].astype(int), proba(cols[input_name])),
            "lot": (lot["label"].astype(int), proba(lot[input_name]) if n_lot else np.zeros((0, len(classes))))}
    good = params.data.good_class
    if good not in classes:
        raise VitinspectError(f"{args.data}: holds classes {classes}, without data.good_class {good!r}; run dvc repro")
    passed = classes.index(good)
    val_labels, val_proba = sets["val"]
    op = operating_point(val_proba[:, passed], val_labels == passed, p.threshold, p.target_escape_rate, classes, good=good)
    t = op["threshold"]
    # A lot without labels (a folder of parts) or no lot at all is judged and counted, never scored.
    lot_scored = n_lot > 0 and bool((sets["lot"][0] >= 0).all())
    detail = {name: evaluation_detail(y, pr, classes, t, good) for name, (y, pr) in sets.items() if name != "lot" or lot_scored}
    if not lot_scored:
        note = lot_meta.get("note") or (UNSCORED if n_lot else "no lot")
        detail["lot"] = unscored_detail(sets["lot"][1], classes, t, good, note)

    labels, probs = sets["test"]
    preds, names = decide(probs, classes, t, good), np.asarray(classes)
    table = pd.DataFrame({"id": cols["id"].astype(str), "label": names[labels], "predicted": names[preds],
                          "predicted_argmax": names[probs.argmax(axis=1)]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.round(probs[:, i], 6)
    matrix = confusion(labels, preds, classes)
    lot_curves = curves(sets["lot"][1][:, passed], sets["lot"][0] == passed, t) if lot_scored else {"roc": [], "pr": []}

    with all_or_nothing():  # every output or none: a full disk or read-only directory leaves the old ones
        write_json(args.operating_point, op)
        with atomic_path(args.predictions) as tmp:
            table.to_csv(tmp, index=False)
        write_json(args.confusion_records, [{"actual": a, "predicted": b, "actual_order": int(i), "predicted_order": int(j)}
                                            for a, b, i, j in zip(table["label"], table["predicted"], labels, preds)])
        write_json(args.confusion_matrix, matrix)
        save_figure(confusion_figure(matrix, f"test confusion matrix (operating point t={t:.3g})"), args.figure)
        write_json(args.roc, lot_curves["roc"])
        write_json(args.pr, lot_curves["pr"])
        write_json(args.report, {"interval": "Wilson score, 95 %; macro-F1: percentile bootstrap, 95 %, 1000 resamples",
                                 "operating_point": op, **detail})
        write_json(args.lot_metrics, summary_of(detail["lot"]) if lot_scored else unscored_summary(detail["lot"]))
        write_json(args.metrics, summary_of(detail["test"]))
        write_json(args.lot_summary, lot_meta.get("summary") or {"note": "the lot stage recorded no summary; run dvc repro lot"})
    lo = detail["lot"]["operating_point"]
    esc, fr, rej = lo["escape"], lo["false_reject"], lo["rejected"]
    lot_line = (f"{esc['k']} of {esc['n']} defective parts escaped, {fr['k']} of {fr['n']} good parts rejected" if lot_scored
                else f"{rej['k']} of {rej['n']} parts rejected, not scored ({lo['note']})")
    print(f"evaluate: threshold {t:.4g} ({op['mode']}, target escape rate {p.target_escape_rate:g} on val"
          f"{'' if op['met_target'] else ': NOT MET, lowest escape rate taken'}); lot: {lot_line}")


if __name__ == "__main__":
    runtime.run_stage(main)

"""Stage `baseline`: the classical peer (RT features per terminal cell + SVM, and a logistic regression).

Reads the parts (never a model of train's), so train.* changes never rerun it. Writes the SVM's
test figures with exactly the keys of metrics/eval.json, a per-sample confusion file for dvc plots,
and reports/baseline.json (choices, timings, the logistic regression, and the SHA-256 of every
saved model file, which load_peer checks before unpickling).
"""

from __future__ import annotations

import time
from itertools import product

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.data.arrow import SPLITS, columns, label_names
from vitinspect.core.errors import VitinspectError
from vitinspect.visualization.figures import confusion_figure
from vitinspect.evaluation.decision import decide, evaluation_summary, operating_point
from vitinspect.evaluation.metrics import confusion
from vitinspect.config.params import load_params
from vitinspect.evaluation.rt_peer import CellUnitSpace, cell_boxes, cell_features, choose, make_logistic, make_svm, predict_proba, save_peer
from vitinspect.core.storage import atomic_path, dataset_meta, load_dataset_dir, save_figure, write_json

INPUT = "rt_cells"  # what the peer sees, in the place of eval.json's "input"
FOREIGN_CELLS = ("data.grid rows x cols cells over the whole frame: these parts are not our renderer's, so the cells "
                 "are not placed on terminals; set data.grid to your part's layout")


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory")
    ap.add_argument("--model", required=True, type=runtime.output_path, help="directory: svm.joblib, logistic.joblib")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: the SVM on the test split, eval.json's keys")
    ap.add_argument("--confusion-records", required=True, type=runtime.output_path, help="JSON: one {actual, predicted} per sample")
    ap.add_argument("--figure", required=True, type=runtime.output_path, help="PNG: the SVM's confusion matrix")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="JSON: choices, logistic regression, hashes (same bytes every run)")
    ap.add_argument("--run-info", type=runtime.output_path,
                    help="JSON: feature, fit and predict times (vary run to run: a log, not a DVC out)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, views, eps = params.baseline, params.data.views, params.nsoartc.eps
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    if parts["train"].features["views"].shape[0] != len(views):
        raise VitinspectError(f"{args.parts}: holds {parts['train'].features['views'].shape[0]} views but data.views lists {len(views)}; rerun prepare")
    cols = {s: columns(parts[s], ["views", "label"]) for s in SPLITS}
    size = cols["train"]["views"].shape[-1]
    boxes = cell_boxes(size, params.data.grid.rows, params.data.grid.cols)

    def features(split):
        v = cols[split]["views"].astype(np.float64) / 255.0
        return cell_features({name: v[:, j] for j, name in enumerate(views)}, boxes, eps)

    start = time.perf_counter()
    raw = {s: features(s) for s in SPLITS}
    feature_seconds = time.perf_counter() - start
    y = {s: cols[s]["label"].astype(int) for s in SPLITS}
    good = params.data.good_class
    if good not in classes:
        raise VitinspectError(f"{args.parts}: holds classes {classes}, without data.good_class {good!r}; rerun prepare")
    unit = raw["train"][y["train"] == classes.index(good)]
    if len(unit) < params.nsoartc.min_unit_space:
        raise VitinspectError(f"params.yaml: the unit space has {len(unit)} good ({good!r}) training parts, fewer than "
                              f"nsoartc.min_unit_space={params.nsoartc.min_unit_space}; raise data.passed_ratio or data.n_images")
    if len(np.unique(y["train"])) < len(classes):
        raise VitinspectError(f"{args.parts}: the train split lacks a class; the peer needs every class to fit")
    space = CellUnitSpace.fit(unit)
    x = {s: space.zscore(raw[s], eps) for s in SPLITS}

    svm_grid = [{"C": c, "gamma": g} for c, g in product(p.grid.C, p.grid.gamma)]
    svm = choose(lambda C, gamma: make_svm(C, gamma, p.class_weight, p.seed), svm_grid, x["train"], y["train"], x["val"], y["val"], len(classes))
    logistic = choose(lambda C: make_logistic(C, p.class_weight, p.seed), [{"C": c} for c in p.grid.C],
                      x["train"], y["train"], x["val"], y["val"], len(classes))

    n_test = len(y["test"])
    results, hashes = {}, {}
    with atomic_path(args.model, is_dir=True) as tmp:
        for name, fitted in (("svm", svm), ("logistic", logistic)):
            start = time.perf_counter()
            proba = predict_proba(fitted.model, x["test"])
            predict_seconds = time.perf_counter() - start
            results[name] = (proba, predict_seconds)
            hashes[name] = {"file": f"{name}.joblib", "sha256": save_peer(fitted.model, tmp / f"{name}.joblib")}

    # The SVM's own operating point, chosen on val by the ViT's rule and settings (evaluate.*): the same
    # decision, so its figures sit beside eval.json's key for key.
    passed = classes.index(good)
    op = operating_point(predict_proba(svm.model, x["val"])[:, passed], y["val"] == passed,
                         params.evaluate.threshold, params.evaluate.target_escape_rate, classes, good=good)
    names = np.asarray(classes)
    labels, preds = y["test"], decide(results["svm"][0], classes, op["threshold"], good)
    write_json(args.confusion_records, [{"actual": a, "predicted": b} for a, b in zip(names[labels], names[preds])])
    matrix = confusion(labels, preds, classes)
    save_figure(confusion_figure(matrix, "RT+SVM peer: test confusion matrix"), args.figure)
    metrics = evaluation_summary(labels, results["svm"][0], classes, op["threshold"], good)

    per_part_ms = 1000 * feature_seconds / sum(len(y[s]) for s in SPLITS)
    report = {
        "features": {"cells": int(len(boxes)), "per_part": int(x["train"].shape[1]), "unit_space_size": space.n,
                     **({"cells_placed": FOREIGN_CELLS} if dataset_meta(args.parts).get("source") == "folders" else {})},
        "input": INPUT,
        "operating_point": op,
        "confusion_matrix": matrix,
        "models": hashes,
    }
    for name, fitted in (("svm", svm), ("logistic", logistic)):
        proba, predict_seconds = results[name]
        report[name] = {
            "chosen": fitted.settings, "class_weight": p.class_weight, "val_macro_f1": fitted.val_macro_f1, "grid": fitted.grid,
            "test": metrics if name == "svm" else evaluation_summary(labels, proba, classes, None, good),
        }
    write_json(args.report, report)
    if args.run_info:  # timings vary run to run: kept out of anything git or DVC tracks
        write_json(args.run_info, {"extract_ms_per_part": round(per_part_ms, 4), **{
            name: {"fit_seconds_all_grid": round(fitted.fit_seconds, 3), "predict_ms_per_part": round(1000 * results[name][1] / n_test, 4)}
            for name, fitted in (("svm", svm), ("logistic", logistic))}})
    write_json(args.metrics, metrics)
    lr = report["logistic"]["test"]
    print(f"baseline: {len(boxes)} cells x 3 features; SVM {svm.settings} test accuracy {metrics['accuracy']:.3f}, "
          f"macro-F1 {metrics['macro_f1']:.3f}, escapes per million {metrics.get('escapes_per_million')}, false-reject rate "
          f"{metrics.get('false_reject_rate')} at t={op['threshold']}; logistic accuracy {lr['accuracy']:.3f}, macro-F1 {lr['macro_f1']:.3f}")


if __name__ == "__main__":
    runtime.run_stage(main)

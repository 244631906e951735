"""Stage `evaluate`: predict the test split and write the metrics, confusion matrices and predictions."""

from __future__ import annotations

import argparse
import sys

try:
    from vitinspect import cli  # first: it sets the offline environment before any third-party import
except ModuleNotFoundError:  # run by a Python that lacks the package (dvc outside the venv)
    sys.exit(f"error: {sys.executable} cannot import vitinspect; run `source .venv/bin/activate` first (or `make repro`)")

import numpy as np
import pandas as pd

from vitinspect.figures import confusion_figure
from vitinspect.metrics import confusion, inspection_metrics
from vitinspect.inference import model_and_test_split, predict_proba, to_pixel_values
from vitinspect.params import load_params
from vitinspect.storage import atomic_path, save_figure, write_json


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--metrics", required=True, type=cli.output_path, help="JSON: accuracy, F1, inspection rates")
    ap.add_argument("--confusion-matrix", required=True, type=cli.output_path, help="JSON: labels, counts, row-normalised")
    ap.add_argument("--confusion-records", required=True, type=cli.output_path, help="JSON: one {actual, predicted} per sample, for dvc plots")
    ap.add_argument("--predictions", required=True, type=cli.output_path, help="CSV: id, label, predicted, probabilities")
    ap.add_argument("--figure", required=True, type=cli.output_path, help="PNG: the confusion matrix with counts")
    args = ap.parse_args(argv)

    p = load_params(args.params).evaluate
    model, input_name, spec, classes, cols = model_and_test_split(args.data, args.model, ["id", "label"])

    proba = predict_proba(model, to_pixel_values(cols[input_name], spec), p.batch_size)
    labels, preds = cols["label"].astype(int), proba.argmax(axis=1)
    names = np.asarray(classes)

    table = pd.DataFrame({"id": cols["id"].astype(str), "label": names[labels], "predicted": names[preds]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.round(proba[:, i], 6)
    with atomic_path(args.predictions) as tmp:
        table.to_csv(tmp, index=False)
    write_json(args.confusion_records, [{"actual": a, "predicted": b} for a, b in zip(table["label"], table["predicted"])])
    matrix = confusion(labels, preds, classes)
    write_json(args.confusion_matrix, matrix)
    save_figure(confusion_figure(matrix), args.figure)
    metrics = {"input": input_name, **inspection_metrics(labels, preds, classes)}
    write_json(args.metrics, metrics)
    print(f"evaluate: test accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
          f"escape rate {metrics.get('escape_rate')}, false-reject rate {metrics.get('false_reject_rate')}")


if __name__ == "__main__":
    cli.run_stage(main)

"""Stage `baseline`: the peers (RT features per terminal cell + SVM, and a logistic regression; a plain CNN).

Reads the parts, nsoartc's dataset and the lot (never a model of train's), so train.* changes never rerun it. Writes the
SVM's and the CNN's test figures with exactly the keys of metrics/baseline.json, per-sample confusion files for
dvc plots, and reports/baseline.json (choices, the logistic regression, the CNN's settings, and the SHA-256 of
every saved joblib file, which load_peer checks before unpickling; each peer on the lot, at its operating point and
at the escape target evaluate compares every judge at). The CNN (``baseline.cnn``) is trained by the
ViT's own Trainer machinery (:mod:`vitinspect.model.cnn_run`); with ``baseline.cnn.enabled: false`` its figures
file is {} and its records [].
"""

from __future__ import annotations

import functools

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.config.params import load_params
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path, dataset_meta, load_dataset_dir, save_figure, write_json
from vitinspect.data.arrow import SPLITS, columns, label_names
from vitinspect.evaluation.peer_lot import lot_block, lot_proba, lot_views
from vitinspect.evaluation.rt_peer import fit_peers, peer_inputs, peer_report, predict_timed, save_peer
from vitinspect.model.cnn_run import cnn_peer
from vitinspect.visualization.figures import confusion_figure

# A file output: a folder there is refused when the arguments are read, before the minutes of the CNN's training.
OUTPUT_FILE = functools.partial(runtime.output_path, file=True)


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory")
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory (the CNN's images)")
    ap.add_argument("--lot", required=True, help="the lot stage's dataset directory (the peers judge its parts)")
    ap.add_argument("--model", required=True, type=runtime.output_path, help="directory: svm.joblib, logistic.joblib, cnn/")
    ap.add_argument("--metrics", required=True, type=OUTPUT_FILE, help="JSON: the SVM on the test split, eval.json's keys")
    ap.add_argument("--confusion-records", required=True, type=OUTPUT_FILE, help="JSON: one {actual, predicted} per sample")
    ap.add_argument("--cnn-metrics", required=True, type=OUTPUT_FILE, help="JSON: the CNN on the test split, the same keys")
    ap.add_argument("--cnn-confusion-records", required=True, type=OUTPUT_FILE, help="JSON: the CNN's {actual, predicted}")
    ap.add_argument("--figure", required=True, type=OUTPUT_FILE, help="PNG: the SVM's confusion matrix")
    ap.add_argument("--report", required=True, type=OUTPUT_FILE, help="JSON: choices, logistic regression, hashes (same bytes every run)")
    ap.add_argument("--run-info", type=OUTPUT_FILE,
                    help="JSON: feature, fit and predict times (vary run to run: a log, not a DVC out)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, views, good = params.baseline, params.data.views, params.data.good_class
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    if parts["train"].features["views"].shape[0] != len(views):
        raise VitinspectError(f"{args.parts}: holds {parts['train'].features['views'].shape[0]} views but data.views lists {len(views)}; rerun prepare")
    cols = {s: columns(parts[s], ["views", "label"]) for s in SPLITS}
    inputs = peer_inputs(cols, views, params.data.grid, params.nsoartc.eps, classes, good, params.nsoartc.min_unit_space, args.parts)
    fitted = fit_peers(inputs, p, len(classes))
    lot = lot_views(args.lot, list(views))
    cnn = cnn_peer(load_dataset_dir(args.data), p.cnn, classes, good, params.evaluate, args.data, lot)

    tested, hashes = {}, {}
    with atomic_path(args.model, is_dir=True) as tmp:
        for name, peer in fitted.items():
            tested[name] = predict_timed(peer.model, inputs.x["test"])
            hashes[name] = {"file": f"{name}.joblib", "sha256": save_peer(peer.model, tmp / f"{name}.joblib")}
        cnn.save(tmp / "cnn")
    foreign_cells = dataset_meta(args.parts).get("source") == "folders"
    out = peer_report(fitted, tested, inputs, classes, good, params.evaluate, p.class_weight, hashes, foreign_cells, args.parts)
    svm_lot = lot_proba(fitted["svm"], inputs, lot["views"], list(views), params.nsoartc.eps) if lot["views"] is not None else None
    out.report["lot"] = lot_block(lot["label"], svm_lot, out.report["operating_point"], classes, good, params.evaluate.target_escape_rate)
    out.report["cnn"], out.run_info["cnn"] = cnn.report, cnn.run_info
    write_json(args.confusion_records, out.confusion_records)
    write_json(args.cnn_confusion_records, cnn.records)
    save_figure(confusion_figure(out.confusion_matrix, "RT+SVM peer: test confusion matrix"), args.figure)
    write_json(args.report, out.report)
    if args.run_info:  # timings vary run to run: kept out of anything git or DVC tracks
        write_json(args.run_info, out.run_info)
    write_json(args.metrics, out.metrics)
    write_json(args.cnn_metrics, cnn.metrics)
    print(out.line)
    print(cnn.line)


if __name__ == "__main__":
    runtime.run_stage(main)

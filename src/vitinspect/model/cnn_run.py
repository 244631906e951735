"""The CNN peer's run in the baseline stage: trained by the ViT's own machinery, judged by the peer's rule.

The same data (:func:`vitinspect.model.training_run.training_data`: nsoartc's train and val splits, in
``baseline.cnn.input``'s representation, every labelled training part as the SVM uses), the same Trainer
(:func:`vitinspect.model.training_run.run_training`: per-epoch evaluation, label smoothing, the schedule, the
shift augmentation, bf16 on CUDA), the same pixel values (:func:`vitinspect.model.prediction.to_pixel_values`).
Its checkpoints go to a temporary directory that is removed afterwards: a killed run starts again from the
first epoch (no resume; the run takes minutes). On CPU the same params give the same bytes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.core.runtime import set_threads
from vitinspect.data.arrow import MappedImages, columns, label_names
from vitinspect.evaluation.peer_lot import lot_block
from vitinspect.evaluation.rt_peer import peer_scores
from vitinspect.model.cnn_peer import CnnPeer, build_cnn, save_cnn
from vitinspect.model.prediction import predict_images
from vitinspect.model.strategies import count_trainable
from vitinspect.model.training_run import run_training, training_data
from vitinspect.model.vit import InputSpec

FULL = SimpleNamespace(strategy="full")  # a CNN has no fine-tuning strategy: every weight trains


@dataclass
class CnnPeerResult:
    """What the baseline stage writes of the CNN peer: the model (None when ``baseline.cnn.enabled`` is false),
    its test figures (eval.json's keys, as metrics/baseline.json), one {actual, predicted} per test part, its block
    of reports/baseline.json (the same bytes every run on CPU), its timings (a log) and the line it prints."""

    model: CnnPeer | None
    metrics: dict
    records: list[dict]
    report: dict
    run_info: dict
    line: str

    def save(self, directory: Path) -> None:
        """config.json and model.safetensors into ``directory`` (nothing when the peer is off)."""
        if self.model is not None:
            save_cnn(self.model, directory)


OFF = CnnPeerResult(None, {}, [], {"enabled": False}, {}, "baseline: CNN peer off (baseline.cnn.enabled: false)")


def fit_cnn(ds, cnn_params, good: str, work: Path) -> tuple[CnnPeer, InputSpec, object, str]:
    """Train the CNN on nsoartc's DatasetDict ``ds`` (train, val) with ``baseline.cnn``'s settings; ``work``: a
    directory for the checkpoints and the per-epoch log. Returns (model, its InputSpec, the TrainingRun, the
    image column it read)."""
    c = cnn_params
    set_threads(c.threads)
    data = training_data(ds, SimpleNamespace(input=c.input, label_fraction=1.0, seed=c.seed))
    model = build_cnn(c.widths, data.image_size, data.classes, c.seed, c.dropout, data.column)
    spec = InputSpec(data.image_size)
    run = run_training(model, spec, data, c, FULL, good, work / "checkpoints", str(work / "live"), section="baseline.cnn")
    if run.live is not None:
        run.live.end()
    return run.model, spec, run, data.column


def cnn_peer(ds, cnn_params, classes: list[str], good: str, evaluate_params, where: str, lot: dict | None = None) -> CnnPeerResult:
    """The CNN peer fitted on ``ds`` (nsoartc's dataset, read from ``where``) and judged on its test split at its own
    operating point (:func:`vitinspect.evaluation.rt_peer.peer_scores`, the SVM's rule), and on the lot (``lot``:
    :func:`vitinspect.evaluation.peer_lot.lot_views`; its block in the report, :func:`~vitinspect.evaluation.peer_lot.lot_block`).
    ``classes``: the parts' class names, which the dataset's must equal. :data:`OFF` when ``baseline.cnn.enabled``
    is false."""
    c = cnn_params
    if not c.enabled:
        return OFF
    if label_names(ds["train"]) != classes:
        raise VitinspectError(f"{where}: classes {label_names(ds['train'])} differ from the parts' {classes}; run dvc repro nsoartc")
    with tempfile.TemporaryDirectory(prefix="vitinspect-cnn-") as tmp:  # no resume: removed whatever happens
        model, spec, run, column = fit_cnn(ds, c, good, Path(tmp))
    y = {s: columns(ds[s], ["label"])["label"].astype(int) for s in ("val", "test")}
    proba_val = predict_images(model, MappedImages(ds["val"], column), spec)
    start = time.perf_counter()
    proba_test = predict_images(model, MappedImages(ds["test"], column), spec)
    predict_seconds = time.perf_counter() - start
    scored = peer_scores(y["val"], proba_val, y["test"], proba_test, classes, good, evaluate_params, where)
    proba_lot = (predict_images(model, MappedImages(lot["split"], column), spec) if lot and lot["split"] is not None
                 else np.zeros((0, len(classes))))
    lot_figures = lot_block(lot["label"] if lot else np.zeros(0), proba_lot, scored.operating_point, classes, good,
                            evaluate_params.target_escape_rate)
    model = model.cpu()
    evals = [e for e in run.trainer.state.log_history if "eval_macro_f1" in e]
    _, total = count_trainable(model)
    report = {"input": c.input, "widths": list(c.widths), "parameters": total, "epochs": int(round(evals[-1]["epoch"])) if evals else 0,
              "val_macro_f1": round(float(evals[-1]["eval_macro_f1"]), 6) if evals else None,
              "operating_point": scored.operating_point, "confusion_matrix": scored.confusion_matrix, "lot": lot_figures,
              "model": "cnn/model.safetensors"}
    args = run.trainer.args
    run_info = {"train_wall_seconds": round(run.wall_seconds, 1), "device": str(args.device), "bf16": bool(args.bf16),
                "images_per_second": round(float(run.result.metrics["train_samples_per_second"]), 1),
                "predict_ms_per_part": round(1000 * predict_seconds / max(1, len(y["test"])), 4)}
    m = scored.metrics
    line = (f"baseline: CNN {list(c.widths)} on {c.input}, {total:,} parameters, {report['epochs']} epochs in {run.wall_seconds:.0f} s: "
            f"test accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, escapes per million {m.get('escapes_per_million')}, "
            f"false-reject rate {m.get('false_reject_rate')} at t={scored.operating_point['threshold']}")
    return CnnPeerResult(model, m, scored.records, report, run_info, line)

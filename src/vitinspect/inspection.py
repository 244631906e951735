"""Judging parts from their camera views with a bundle: composite, model, OOD guard, operating point.

Imports no torch: the ONNX engine runs the composite in numpy and the network in onnxruntime;
the torch engine imports torch only when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitinspect.bundle import Bundle
from vitinspect.errors import VitinspectError
from vitinspect.nsoartc import double_eye, to_image
from vitinspect.ood import FeatureSpace, pattern_score, pixel_score

ENGINES = ("torch", "onnx")


def composite(bundle: Bundle, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, H, W) uint8 views in the bundle's view order -> (model input (N, H, W, 3) uint8, z (N, 3, H, W)).

    The model input is the NSOARTC composite, or the centre view repeated over three channels
    for a model trained on raw images; z (the unit-space z-scores) feeds the OOD guard either way.
    """
    v = views.astype(np.float32) / 255.0
    raw = double_eye({name: v[:, j] for j, name in enumerate(bundle.views)}, bundle.window, bundle.eps)
    z = bundle.unit.zscore(raw, bundle.eps)
    if bundle.input_name == "nsoartc":
        images = to_image(z, bundle.gain)
    else:
        images = np.repeat(views[:, bundle.views.index("center"), :, :, None], 3, axis=-1)
    return images, z


class OnnxEngine:
    """The bundle's model.onnx in onnxruntime (CPU)."""

    name = "onnx"

    def __init__(self, bundle: Bundle, threads: int = 1):
        import onnxruntime as ort

        if not bundle.onnx_path.is_file():
            raise VitinspectError(f"{bundle.onnx_path}: missing; run `vitinspect export --bundle {bundle.path}`")
        opts = ort.SessionOptions()
        # One thread, no spin-waiting: measured faster on a busy 2-core PC, where a spinning pool
        # steals the CPU from the composite (benchmarks/run.py).
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(bundle.onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise VitinspectError(f"{bundle.onnx_path}: onnxruntime cannot load it: {first}") from None

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        proba, features = self.session.run(["proba", "features"], {"images": np.ascontiguousarray(images, dtype=np.float32)})
        return proba, features


class TorchEngine:
    """The bundle's vit/ in PyTorch, through the same wrapper the ONNX graph was exported from."""

    name = "torch"

    def __init__(self, bundle: Bundle):
        from vitinspect.inspection_net import InspectionNet
        from vitinspect.model import load_trained, trained_input

        model = load_trained(bundle.model_dir)
        _, spec = trained_input(model, bundle.model_dir)
        self.net = InspectionNet(model, spec)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from vitinspect.inspection_net import run

        return run(self.net, images)


def make_engine(bundle: Bundle, name: str):
    if name not in ENGINES:
        raise VitinspectError(f"--engine must be one of {list(ENGINES)}, got {name!r}")
    return OnnxEngine(bundle) if name == "onnx" else TorchEngine(bundle)


def decide_class(proba: np.ndarray, classes: list[str], operating_point: dict) -> np.ndarray:
    """(N, K) probabilities -> (N,) class indices.

    With a threshold t: ``passed`` when p(passed) >= t, else the most probable defect class;
    without one (threshold None): the most probable class.
    """
    t = operating_point.get("threshold")
    if t is None:
        return proba.argmax(axis=1)
    p = classes.index(operating_point.get("class", "passed"))
    others = proba.copy()
    others[:, p] = -np.inf
    return np.where(proba[:, p] >= t, p, others.argmax(axis=1))


@dataclass(frozen=True)
class Judgement:
    """Per-part results of one batch; arrays of length N."""

    verdict: np.ndarray  # "pass", "reject" or "unknown"
    cls: np.ndarray  # class name chosen by the operating point (also when unknown)
    proba: np.ndarray  # (N, K)
    ood_score: np.ndarray
    ood_flag: np.ndarray
    scores: dict  # component -> (N,) raw OOD scores
    images: np.ndarray  # (N, H, W, 3) model input


def ood_scores(bundle: Bundle, z: np.ndarray, features: np.ndarray, feature_space: FeatureSpace, clip: float) -> dict:
    """component -> (N,) raw scores (see vitinspect.ood); the unit space and eps come from ``bundle``."""
    return {"pixel": pixel_score(z, clip), "pattern": pattern_score(z, bundle.unit.mean, bundle.unit.std, bundle.eps),
            "feature": feature_space.distance(features)}


def judge(bundle: Bundle, engine, views: np.ndarray) -> Judgement:
    """(N, V, H, W) uint8 views -> a Judgement."""
    images, z = composite(bundle, views)
    proba, features = engine(images)
    scores = ood_scores(bundle, z, features, bundle.features, bundle.calibration.clip)
    combined = bundle.calibration.combined(scores)
    flag = combined > bundle.calibration.threshold
    idx = decide_class(proba, bundle.classes, bundle.operating_point)
    names = np.asarray(bundle.classes, dtype=object)[idx]
    good = bundle.operating_point.get("class", "passed")
    verdict = np.where(flag, "unknown", np.where(names == good, "pass", "reject")).astype(object)
    return Judgement(verdict, names, proba, combined, flag, scores, images)

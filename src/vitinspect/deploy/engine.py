"""Judging parts from their camera views with a bundle: composite, model, OOD guard, operating point.

Imports no torch: the ONNX engine runs the composite in numpy and the network in onnxruntime;
the torch engine imports torch only when it is built.

An engine is made only for a bundle that proves itself (:func:`make_engine`): ``bundle.load`` has
checked every value and every file's hash; here the engine must give the bundle's check parts the
probabilities and OOD scores recorded when it was built (by torch). With ``--engine torch`` the
ONNX graph is checked the same way, so the two engines agree on those parts whichever is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitinspect.composite.nsoartc import to_image, unit_zscores
from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import atomic_path
from vitinspect.core.text import short
from vitinspect.deploy.bundle import HASHES, ONNX, Bundle, CheckParts, load, write_hashes
from vitinspect.deploy.ood_guard import FeatureSpace, pattern_score, pixel_score
from vitinspect.evaluation.verdict import combined

ENGINES = ("torch", "onnx")
# How far an engine may stray from the check parts' recorded figures: ONNX and torch differ by ~1e-6
# in probability (tests/unit/app/test_inspect.py measures <= 1e-4 over the test split); a swapped or retrained
# network differs by tenths.
PROBA_TOLERANCE = 2e-3
OOD_TOLERANCE = 0.05  # absolute, on the combined (standardised) OOD score, plus 1 % of it
GATE_TOLERANCE = 1e-9  # relative: the gate is numpy on the composite's bytes, the same whichever engine runs the network


def composite(bundle: Bundle, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, V, H, W) uint8 views in the bundle's view order -> (model input (N, H, W, 3) uint8, z (N, 3, H, W)).

    The model input is the NSOARTC composite, or the centre view repeated over three channels
    for a model trained on raw images; z (the unit-space z-scores) feeds the OOD guard either way.
    """
    z = unit_zscores(views, bundle.views, bundle.unit, bundle.window, bundle.eps)
    if bundle.input_name == "nsoartc":
        images = to_image(z, bundle.gain)
    else:
        images = np.repeat(views[:, bundle.views.index("center"), :, :, None], 3, axis=-1)
    return images, z


class OnnxEngine:
    """The bundle's model.onnx in onnxruntime (CPU)."""

    name = "onnx"

    def __init__(self, bundle: Bundle, threads: int = 1, path=None):
        import onnxruntime as ort  # lazy: ~0.2 s, paid only by the ONNX engine (not by render, export, torch)

        self.path = bundle.onnx_path if path is None else path
        if not self.path.is_file():
            raise VitinspectError(f"{self.path}: missing; run `vitinspect export --bundle {bundle.path}`")
        opts = ort.SessionOptions()
        # One thread, no spin-waiting: measured faster on a busy 2-core PC, where a spinning pool
        # steals the CPU from the composite (benchmarks/run.py).
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise VitinspectError(f"{self.path}: onnxruntime cannot load it: {first}") from None
        self._check_signature(bundle)

    def _check_signature(self, bundle: Bundle) -> None:
        """One input ``images`` (N, H, W, 3); outputs ``proba`` (N, K) and ``features`` (N, D)."""
        inputs = [(i.name, i.shape) for i in self.session.get_inputs()]
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if [name for name, _ in inputs] != ["images"] or len(inputs[0][1]) != 4:
            raise VitinspectError(f"{self.path}: takes inputs {short([n for n, _ in inputs])}, not one 4-D 'images' "
                                  f"(N, H, W, 3); rebuild the bundle or run `vitinspect export --bundle {bundle.path}`")
        if "proba" not in outputs or "features" not in outputs:
            raise VitinspectError(f"{self.path}: gives outputs {short(sorted(outputs))}, not 'proba' and 'features'; "
                                  f"rebuild the bundle or run `vitinspect export --bundle {bundle.path}`")
        k = outputs["proba"][-1] if len(outputs["proba"]) == 2 else None
        if len(outputs["proba"]) != 2 or (isinstance(k, int) and k != len(bundle.classes)):
            raise VitinspectError(f"{self.path}: proba has shape {short(outputs['proba'])}, the bundle has "
                                  f"{len(bundle.classes)} classes {short(bundle.classes)}")

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            proba, features = self.session.run(["proba", "features"], {"images": np.ascontiguousarray(images, dtype=np.float32)})
        except Exception as exc:  # onnxruntime's own types: a graph that takes another image size, ...
            first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise VitinspectError(f"{self.path}: onnxruntime cannot run it on {images.shape[1]} px composites: {first}") from None
        return proba, features


class TorchEngine:
    """The bundle's vit/ in PyTorch, through the same wrapper the ONNX graph was exported from."""

    name = "torch"

    def __init__(self, bundle: Bundle):
        # Lazy: deploy imports no torch at module level (the line PC may have none); torch + transformers take ~5 s.
        from vitinspect.deploy.exported_net import InspectionNet
        from vitinspect.model.vit import load_trained, trained_input

        model = load_trained(bundle.model_dir)
        _, spec = trained_input(model, bundle.model_dir)
        if model.config.num_labels != len(bundle.classes):
            raise VitinspectError(f"{bundle.model_dir}: the model has {model.config.num_labels} classes, the bundle "
                                  f"{len(bundle.classes)} {short(bundle.classes)}")
        self.net = InspectionNet(model, spec)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from vitinspect.deploy.exported_net import run  # lazy: torch, as in __init__

        return run(self.net, images)


def make_engine(bundle: Bundle, name: str):
    """The engine ``name`` for a loaded bundle, proven on the bundle's check parts (both engines' graphs
    with ``torch``: the ONNX one is cheap to run beside it)."""
    if name not in ENGINES:
        raise VitinspectError(f"--engine must be one of {list(ENGINES)}, got {short(name)}")
    engine = OnnxEngine(bundle) if name == "onnx" else TorchEngine(bundle)
    if bundle.check is not None:
        verify_engine(bundle, engine, bundle.check)
        if name == "torch":
            verify_engine(bundle, OnnxEngine(bundle), bundle.check)
    return engine


def open_bundle(path, engine_name: str):
    """(bundle, engine): the bundle at ``path`` loaded and proven (bundle.load), and its engine checked."""
    bundle = load(path)
    return bundle, make_engine(bundle, engine_name)


def verify_engine(bundle: Bundle, engine, check: CheckParts) -> None:
    """The engine must give the check parts the probabilities and OOD scores recorded when the bundle
    was built; otherwise one line naming the network file and the largest difference."""
    where = getattr(engine, "path", bundle.model_dir)
    j = judge(bundle, engine, check.views)
    if j.proba.shape != check.proba.shape:
        raise VitinspectError(f"{where}: gives probabilities of shape {j.proba.shape[1:]} per part, the bundle has "
                              f"{len(bundle.classes)} classes {short(bundle.classes)}")
    dp = float(np.max(np.abs(j.proba - check.proba))) if np.all(np.isfinite(j.proba)) else np.inf
    if not dp <= PROBA_TOLERANCE:
        raise VitinspectError(f"{where}: disagrees with the bundle's check parts (a probability differs by {dp:.3g}, "
                              f"allowed {PROBA_TOLERANCE:g}): not the network this bundle was built with; rebuild the bundle (dvc repro)")
    do = np.abs(j.ood_score - check.ood_score)
    if not np.all(do <= OOD_TOLERANCE + 0.01 * np.abs(check.ood_score)):
        raise VitinspectError(f"{where}: disagrees with the bundle's check parts (an OOD score differs by {float(np.max(do)):.3g}): "
                              "not the network this bundle was built with; rebuild the bundle (dvc repro)")
    dg = np.abs(j.scores["gate"] - check.gate_score)
    if not np.all(dg <= GATE_TOLERANCE * np.maximum(np.abs(check.gate_score), 1.0)):
        raise VitinspectError(f"{bundle.path / 'gate.npz'}: disagrees with the bundle's check parts (a gate score differs by "
                              f"{float(np.max(dg)):.3g}): not the gate this bundle was built with; rebuild the bundle (dvc repro)")


@dataclass(frozen=True)
class Judgement:
    """Per-part results of one batch; arrays of length N."""

    verdict: np.ndarray  # "pass", "reject" or "unknown"
    cls: np.ndarray  # the good class where the gate accepts, else the most probable defect (also when unknown)
    proba: np.ndarray  # (N, K)
    ood_score: np.ndarray
    ood_flag: np.ndarray
    scores: dict  # component -> (N,) raw OOD scores, and "gate": the unit-space gate's MD
    images: np.ndarray  # (N, H, W, 3) model input


def ood_scores(bundle: Bundle, z: np.ndarray, features: np.ndarray, feature_space: FeatureSpace, clip: float) -> dict:
    """component -> (N,) raw scores (see vitinspect.deploy.ood_guard); the unit space and eps come from ``bundle``.
    The pixel and pattern scores read the z-scores against the fitted std, not the floored one the composite uses
    (``nsoartc.std_floor``): a shifted or rescaled part shows in the empty background, where only the fitted std
    is small enough to tell it."""
    z = bundle.unit.unfloored(z, bundle.eps)
    return {"pixel": pixel_score(z, clip), "pattern": pattern_score(z, bundle.unit.mean, bundle.unit.std, bundle.eps),
            "feature": feature_space.distance(features)}


def gate_score(bundle: Bundle, images: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(N,) the gate's MD of the parts: on the NSOARTC composite (the model input, or made from ``z`` for a model
    of raw views), the same bytes the evaluate stage scored (data/nsoartc, data/lot)."""
    return bundle.gate.score(images if bundle.input_name == "nsoartc" else to_image(z, bundle.gain))


def judge(bundle: Bundle, engine, views: np.ndarray) -> Judgement:
    """(N, V, H, W) uint8 views -> a Judgement: the combined verdict (evaluation.verdict: the gate passes a part,
    the classifier names a rejected part's defect), ``unknown`` where the OOD guard flags it."""
    images, z = composite(bundle, views)
    proba, features = engine(images)
    scores = ood_scores(bundle, z, features, bundle.features, bundle.calibration.clip)
    ood = bundle.calibration.combined(scores)
    flag = ood > bundle.calibration.threshold
    scores["gate"] = gate_score(bundle, images, z)
    good = bundle.operating_point.get("class", "passed")
    idx = combined(proba, bundle.gate.accepts(scores["gate"]), bundle.classes, good)
    names = np.asarray(bundle.classes, dtype=object)[idx]
    verdict = np.where(flag, "unknown", np.where(names == good, "pass", "reject")).astype(object)
    return Judgement(verdict, names, proba, ood, flag, scores, images)


OPSETS = (14, 21)  # the ONNX opsets torch.onnx exports this network with (as params' bundle.onnx_opset)


def reexport(path, opset) -> Bundle:
    """``vitinspect export``: rewrite the bundle's model.onnx from its vit/ (model.onnx may be missing or
    stale), prove the new graph on the check parts, then update manifest.json's hash of it."""
    if not isinstance(opset, int) or isinstance(opset, bool) or not OPSETS[0] <= opset <= OPSETS[1]:
        raise VitinspectError(f"--opset must be an ONNX opset in [{OPSETS[0]}, {OPSETS[1]}], got {short(opset)}")
    b = load(path, skip_hashes=(ONNX,))
    # Lazy: deploy imports no torch at module level (the line PC may have none); torch + transformers take ~5 s.
    from vitinspect.deploy.exported_net import InspectionNet, export_onnx
    from vitinspect.model.vit import load_trained, trained_input

    model = load_trained(b.model_dir)
    _, spec = trained_input(model, b.model_dir)
    with atomic_path(b.onnx_path) as tmp:
        export_onnx(InspectionNet(model, spec), b.image_size, tmp, opset)
        verify_engine(b, OnnxEngine(b, path=tmp), b.check)
    with atomic_path(b.path / HASHES) as tmp:
        write_hashes(b.path, tmp)
    return b

"""Building the inspection bundle (the ``bundle`` stage): the OOD guard fitted on the training split and
calibrated on val, its figures on the test split and on probe sets, the check parts, bundle.json's content.

The network comes in as a function (``engine``: images -> (proba, features), the torch network the stage
loads), so this module imports no torch; :mod:`vitinspect.deploy.bundle` writes what it returns.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.core.errors import VitinspectError
from vitinspect.deploy import bundle as bundle_format
from vitinspect.deploy.engine import composite, judge, ood_scores
from vitinspect.deploy.ood_guard import FeatureSpace, calibrate, rate
from vitinspect.deploy.probes import ood_probes

CHUNK = 256
CHECK_PER_CLASS = 2  # check parts: the first test parts of each class (8 parts of 4 classes)
ARGMAX = {"class": "passed", "threshold": None, "source": "argmax (no operating point given)"}


def read_operating_point(path, classes: list[str], good: str = "passed") -> dict:
    """evaluate's operating point JSON at ``path`` -> {"class", "threshold" (None or in [0, 1]), "source"};
    without a path, argmax with ``good`` (params' data.good_class) as the class."""
    if not path:
        return dict(ARGMAX, **{"class": good})
    try:
        op = json.loads(open(path).read())
        t = op["threshold"]
        if op.get("class", "passed") not in classes or not (t is None or 0.0 <= float(t) <= 1.0):
            raise ValueError("class must be one of the classes and threshold null or in [0, 1]")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitinspectError(f"{path}: not an operating point ({type(exc).__name__}: {str(exc)[:120]})") from None
    return {"class": op.get("class", "passed"), "threshold": None if t is None else float(t), "source": str(path)}


def check_parts(b: bundle_format.Bundle, engine, views: np.ndarray, labels: np.ndarray) -> bundle_format.CheckParts:
    """A few test parts, each class's first (``views``: (N, V, H, W) uint8, ``labels``: (N,) int), with what
    the bundle gives them now: every engine must give them back when the bundle is opened."""
    pick = [i for k in np.unique(labels) for i in np.flatnonzero(labels == k)[:CHECK_PER_CLASS]]
    v = views[np.sort(pick)]
    j = judge(b, engine, v)
    return bundle_format.CheckParts(v, j.proba.astype(np.float64), j.ood_score.astype(np.float64), j.scores["gate"].astype(np.float64))


@dataclasses.dataclass(frozen=True)
class Built:
    """What the bundle stage writes: the bundle (in memory), bundle.json's content, the check parts, the OOD
    report (reports/ood.json) and its headline rates (the metrics)."""

    bundle: bundle_format.Bundle
    content: dict
    check: bundle_format.CheckParts
    report: dict
    metrics: dict


def build(out, splits: dict, classes: list[str], engine, *, input_name: str, unit: UnitSpace, operating_point: dict,
          data, nsoartc, settings, data_dict: dict, gate) -> Built:
    """The bundle of the network ``engine`` and its OOD guard.

    ``splits``: {"train"|"val"|"test": {"views": (N, V, S, S) uint8, "label": (N,) int}}; ``engine``:
    (N, S, S, C) uint8 model input -> (proba (N, K), pooled features (N, D)); ``data``, ``nsoartc`` and
    ``settings``: params' data, nsoartc and bundle sections (or anything with their fields); ``data_dict``:
    the data section as bundle.json records it; ``out``: the bundle's directory (Bundle.path); ``gate``: the
    evaluate stage's unit-space gate (models/gate.npz), judged here on test and on the probes.
    """
    p = settings
    b = bundle_format.Bundle(out, list(data.views), classes, data.image_size, input_name, nsoartc.window,
                             nsoartc.gain, nsoartc.eps, unit, None, None, operating_point, data_dict, {}, gate=gate)

    def features_and_z(views):  # in chunks: the RT channels of a whole split are large
        chunks = [(engine(images)[1], z) for images, z in (composite(b, views[i:i + CHUNK]) for i in range(0, len(views), CHUNK))]
        return np.concatenate([f for f, _ in chunks]), np.concatenate([z for _, z in chunks])

    # The feature space from the training split; the calibration on val; the figures on test and probes.
    features = FeatureSpace.fit(features_and_z(splits["train"]["views"])[0], splits["train"]["label"], len(classes))
    val_features, val_z = features_and_z(splits["val"]["views"])
    calibration = calibrate(ood_scores(b, val_z, val_features, features, p.pixel_clip), p.false_alarm_rate, p.pixel_clip)
    b = dataclasses.replace(b, features=features, calibration=calibration)

    test = judge(b, engine, splits["test"]["views"])
    probes = {k: judge(b, engine, v) for k, v in ood_probes(splits["test"]["views"], data, p.shift_px, data.seed, p.probes_per_kind).items()}
    kinds = {k: j.ood_flag for k, j in probes.items()}
    gate_rejects = {k: ~gate.accepts(j.scores["gate"]) for k, j in probes.items()}
    probes_flagged = np.concatenate(list(kinds.values()))
    headline = {
        "false_alarm_target": p.false_alarm_rate,
        "val": rate(calibration.n_val_flagged, calibration.n_val),
        "test_flagged": rate(int(test.ood_flag.sum()), len(test.ood_flag)),
        "probes_flagged": rate(int(probes_flagged.sum()), len(probes_flagged)),
    }
    report = {**headline, "by_kind": {k: rate(int(f.sum()), len(f)) for k, f in kinds.items()},
              "calibration": calibration.to_dict(),
              "gate": {"test_rejected": rate(int((~gate.accepts(test.scores["gate"])).sum()), len(test.ood_flag)),
                       "probes_rejected_by_kind": {k: rate(int(f.sum()), len(f)) for k, f in gate_rejects.items()}}}
    content = bundle_format.manifest(views=data.views, classes=classes, image_size=data.image_size, input_name=input_name,
                                     nsoartc=nsoartc, operating_point=operating_point, calibration=calibration,
                                     data=data_dict, report=report, gate=gate)
    check = check_parts(b, engine, splits["test"]["views"], splits["test"]["label"])
    metrics = {"ood": {k: v["rate"] for k, v in headline.items() if isinstance(v, dict)}}
    return Built(b, content, check, report, metrics)

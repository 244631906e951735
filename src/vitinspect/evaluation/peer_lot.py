"""The peers on the lot (the baseline stage): the lot's views and labels, the RT+SVM peer's probabilities on them,
and each peer's figures there, at its own operating point and at the escape target at which evaluate compares every
judge (:func:`vitinspect.evaluation.decision.at_escape_target`)."""

from __future__ import annotations

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.evaluation.rt_peer import Fitted, PeerInputs, part_features, predict_proba


def lot_block(labels: np.ndarray, proba: np.ndarray, operating_point: dict, classes: list[str], good: str,
              target_escape_rate: float) -> dict:
    """A peer on the lot (reports/baseline.json): at its own operating point (chosen on val) and at the escape
    target (:func:`vitinspect.evaluation.decision.at_escape_target`, evaluate's comparison of every judge at the same
    escapes). ``labels`` (N,) int, -1 where the lot has none; a lot without labels or parts: not scored."""
    from vitinspect.evaluation.decision import at_escape_target, rates_at

    labels = np.asarray(labels)
    if not len(labels) or (labels < 0).any():
        return {"scored": False, "n_parts": int(len(labels))}
    p, is_good = np.asarray(proba)[:, classes.index(good)], labels == classes.index(good)
    return {"scored": True, "operating_point": rates_at(p, is_good, operating_point["threshold"]),
            "at_escape_target": at_escape_target(p, is_good, target_escape_rate)}


def lot_views(lot_dir, view_names: list[str]) -> dict:
    """The lot stage's parts as the peers read them: {"label": (N,) int (-1 where unlabelled), "views": (N, V, S, S)
    uint8 in ``view_names``' order, "split": the Arrow split (for the CNN's image column)}; N = 0 when there is no lot,
    and "views" and "split" None when it has no labels (nothing to score, so nothing for the peers to predict)."""
    from vitinspect.core.storage import dataset_meta, load_dataset_dir
    from vitinspect.data.arrow import columns

    if dataset_meta(lot_dir)["rows"].get("lot") == 0:
        return {"label": np.zeros(0, dtype=np.int64), "views": None, "split": None}
    split = load_dataset_dir(lot_dir, splits=("lot",))["lot"]
    labels = columns(split, ["label"])["label"].astype(np.int64)
    if (labels < 0).any():
        return {"label": labels, "views": None, "split": None}
    cols = columns(split, ["views"])
    if cols["views"].shape[1] != len(view_names):
        raise VitinspectError(f"{lot_dir}: lot parts hold {cols['views'].shape[1]} views but data.views lists {len(view_names)}; run dvc repro lot")
    return {"label": labels, "views": cols["views"], "split": split}


def lot_proba(fitted: Fitted, inputs: PeerInputs, views: np.ndarray, view_names: list[str], eps: float) -> np.ndarray:
    """The fitted peer's probabilities on the lot's views (N, V, S, S): the same cells and unit space as its test split."""
    return predict_proba(fitted.model, inputs.space.zscore(part_features(views, view_names, inputs.boxes, eps), eps))

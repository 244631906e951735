"""The evaluate stage's judgement: the operating point chosen on val, then the test split and the lot judged at it.

Probabilities in (from whichever model), the figures and tables the stage writes out; the rule and the
intervals are :mod:`vitinspect.evaluation.decision`'s. The classical peer (the baseline stage) takes its
operating point by the same :func:`val_operating_point`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vitinspect.core.errors import VitinspectError
from vitinspect.core.storage import load_dataset_dir
from vitinspect.data.arrow import MappedImages, columns, good_index, label_names
from vitinspect.evaluation.decision import (UNSCORED, at_escape_target, curves, decide, evaluation_detail, operating_point,
                                            unscored_detail)
from vitinspect.evaluation.gate import roc as gate_roc
from vitinspect.evaluation.metrics import confusion
from vitinspect.evaluation.verdict import RULE, blocks, combined, headline, unscored_headline

INTERVAL = "Wilson score, 95 %; macro-F1: percentile bootstrap, 95 %, 1000 resamples"
AT_TARGET = ("each judge at its own threshold that lets at most evaluate.target_escape_rate of the lot's defective parts "
             "pass and rejects the fewest good ones: a comparison at the same escapes, chosen with the lot's labels, "
             "not an operating point (the gate's MD; the classifier's and the peers' p(passed))")


def lot_split(lot_dir: str, lot_meta: dict, input_name: str, classes: list[str], image_shape: tuple) -> dict:
    """The lot stage's parts: {"label": (N,) int (-1 where unlabelled), input_name: (N, *image_shape) uint8,
    memory-mapped, and "nsoartc" (N, S, S, 3), the composites the gate judges}; none (N = 0) when the lot stage recorded no lot (``lot_meta``: its dataset_meta). Raises a
    one-line VitinspectError when its classes or image shape differ from the test split's."""
    if lot_meta["rows"].get("lot") == 0:  # no lot (data.source folders with lot.source render): nothing to read
        lot = {"label": np.zeros(0, dtype=np.int64), input_name: np.zeros((0, *image_shape), np.uint8)}
        lot["nsoartc"] = lot[input_name] if input_name == "nsoartc" else np.zeros((0, *image_shape[:2], 3), np.uint8)
    else:
        lot_ds = load_dataset_dir(lot_dir, splits=("lot",))["lot"]
        if label_names(lot_ds) != classes:
            raise VitinspectError(f"{lot_dir}: lot classes {label_names(lot_ds)} differ from the data's {classes}; run dvc repro")
        lot = {**columns(lot_ds, ["label"]), input_name: MappedImages(lot_ds, input_name), "nsoartc": MappedImages(lot_ds, "nsoartc")}
    if lot[input_name].shape[1:] != image_shape:
        raise VitinspectError(f"{lot_dir}: lot images {lot[input_name].shape[1:]} differ from the test split's; run dvc repro")
    return lot


def val_operating_point(labels: np.ndarray, proba: np.ndarray, classes: list[str], good: str, evaluate_params,
                        where: str) -> dict:
    """The operating point (decision.operating_point) on val: labels (N,) int, proba (N, K), by
    ``evaluate.threshold`` (auto or fixed) and ``evaluate.target_escape_rate``. ``where`` names the data set
    whose classes lack the good class ``good``, if they do."""
    passed = good_index(where, classes, good)
    p = evaluate_params
    return operating_point(proba[:, passed], labels == passed, p.threshold, p.target_escape_rate, classes, good=good)


@dataclass
class Evaluation:
    """What the evaluate stage writes, ready: the operating point, reports/evaluation.json (``report``), the
    test split's and the lot's headline figures (the combined verdict's, :func:`verdict.headline`), the test
    confusion matrix (and one record per part), the test predictions table, the lot's ROC and PR records (the
    classifier's) and the gate's ROC on the lot, and the line it prints."""

    operating_point: dict
    report: dict
    metrics: dict
    lot_metrics: dict
    confusion_matrix: dict
    confusion_records: list[dict]
    predictions: pd.DataFrame
    roc: list[dict]
    pr: list[dict]
    gate_roc: list[dict]
    line: str


def evaluate(sets: dict, test_ids: np.ndarray, classes: list[str], good: str, evaluate_params, lot_note: str | None,
             where: str, gate, gate_scores: dict) -> Evaluation:
    """Choose the operating point on val and judge test and lot at it, by the classifier, by the gate and by the
    combined verdict (:mod:`vitinspect.evaluation.verdict`).

    sets: {"val", "test", "lot"} -> (labels (N,) int, probabilities (N, K)); a lot with any label < 0 (a folder
    of parts without labels) or no part is judged and counted, never scored (``lot_note`` says why, else
    decision.UNSCORED or "no lot"). test_ids: (N_test,) part ids for the predictions table. gate: the fitted
    :class:`vitinspect.evaluation.gate.Gate`; gate_scores: {"val", "test", "lot"} -> (N,) its MD per part.
    """
    p = evaluate_params
    op = val_operating_point(*sets["val"], classes, good, p, where)
    passed, t = classes.index(good), op["threshold"]
    n_lot = len(sets["lot"][0])
    lot_scored = n_lot > 0 and bool((sets["lot"][0] >= 0).all())
    detail = {name: evaluation_detail(y, pr, classes, t, good) for name, (y, pr) in sets.items() if name != "lot" or lot_scored}
    if not lot_scored:
        detail["lot"] = unscored_detail(sets["lot"][1], classes, t, good, lot_note or (UNSCORED if n_lot else "no lot"))
    for name, (y, pr) in sets.items():
        detail[name].update(blocks(y if name != "lot" or lot_scored else None, pr, gate_scores[name], gate, classes, good))

    labels, probs = sets["test"]
    preds, names = decide(probs, classes, t, good), np.asarray(classes)
    verdicts = combined(probs, gate.accepts(gate_scores["test"]), classes, good)
    table = pd.DataFrame({"id": test_ids.astype(str), "label": names[labels], "predicted": names[preds],
                          "predicted_argmax": names[probs.argmax(axis=1)]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.round(probs[:, i], 6)
    table["gate_score"] = np.round(gate_scores["test"], 6)
    table["verdict"] = names[verdicts]
    records = [{"actual": a, "predicted": b, "actual_order": int(i), "predicted_order": int(j)}
               for a, b, i, j in zip(table["label"], table["predicted"], labels, preds)]
    lot_curves = curves(sets["lot"][1][:, passed], sets["lot"][0] == passed, t) if lot_scored else {"roc": [], "pr": []}
    lot_gate_roc = gate_roc(gate_scores["lot"], sets["lot"][0] == passed, gate.threshold) if lot_scored else []
    if lot_scored:  # every judge at the same escapes on the lot: the gate (the combined verdict's pass) and the classifier
        is_good = sets["lot"][0] == passed
        detail["lot"]["at_escape_target"] = {
            "rule": AT_TARGET, "gate": at_escape_target(-gate_scores["lot"], is_good, p.target_escape_rate),
            "classifier": at_escape_target(sets["lot"][1][:, passed], is_good, p.target_escape_rate)}

    lo = detail["lot"]["combined"]
    lot_line = (f"{lo['escape']['k']} of {lo['escape']['n']} defective parts escaped, {lo['false_reject']['k']} of "
                f"{lo['false_reject']['n']} good parts rejected (classifier alone: "
                f"{detail['lot']['operating_point']['false_reject']['k']})" if lot_scored
                else f"{lo['rejected']['k']} of {lo['rejected']['n']} parts rejected, not scored ({detail['lot']['operating_point']['note']})")
    line = (f"evaluate: threshold {t:.4g} ({op['mode']}, target escape rate {p.target_escape_rate:g} on val"
            f"{'' if op['met_target'] else ': NOT MET, lowest escape rate taken'}); gate MD <= {gate.threshold:.4g} "
            f"({gate.n_fit} good parts); lot: {lot_line}")
    report = {"interval": INTERVAL, "operating_point": op, "gate": gate.info(), "verdict": RULE, **detail}
    return Evaluation(op, report, headline(detail["test"]), headline(detail["lot"], bounds=True) if lot_scored else unscored_headline(detail["lot"]),
                      confusion(labels, preds, classes), records, table, lot_curves["roc"], lot_curves["pr"], lot_gate_roc, line)

"""The source's claims, once, as data: what each finding tests, and the verdict sentence built from it.

Each claim names two settings of the study and a figure: the source found ``higher`` scores more
than ``lower`` on ``metric`` (or, for F4, that the figure equals a value). The findings build
their sentence from this table ("the source found X; here Y: agrees / contradicts, real / within
noise"), and a test pins every direction, so a rewrite cannot flip one unnoticed.

A difference is judged against the spread measured *for the settings compared*: half the range of
each setting's seeds, the larger of the two. A setting with one seed has no spread of its own, so
its difference is reported, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Claim:
    finding: str
    claim: str  # the source's claim, in our words
    setting: str  # the source's setting
    measure: str  # what this study measures to test it
    metric: str  # the figure compared (a key of runs.figures_of)
    higher: str  # the side the source found better (a study setting, or "<setting>:<input>" for F3)
    lower: str  # the side the source found worse


CLAIMS = (
    Claim("F1", "10 epochs clearly beat 5; X and Y tilts are told apart at 10",
          "a ViT fine-tuned on NSOARTC composites for 5 and for 10 epochs",
          "test macro-F1 and the X<->Y confusion, 10 epochs (baseline) against 5", "macro_f1", "base", "epochs5"),
    Claim("F2", "with passed parts at about 1/50 of the data the passed class is judged poorly; at least 1/5 is needed",
          "the passed share of the training data at 1/50 and at 1/5",
          "passed recall (and false rejects) at a passed ratio of 0.02 (baseline) against 0.2", "passed_recall", "ratio0.2", "base"),
    Claim("F3", "with the fine-tuned model, maps on raw images were more reasonable than on NSOARTC composites "
          "(two of three product examples; no composite like NSOARTC was ever in the pretrained model)",
          "one fine-tuned ViT's maps drawn on a raw image and on the NSOARTC composite of the same part, judged by eye",
          "relevance mass of the NSOARTC-trained model's gradient-weighted map inside the defect mask, on the raw view "
          "against on the composite of the same test parts", "relevance_mass", "base:raw", "base:nsoartc"),
    Claim("F4", "fine-tuning google/vit-large-patch16-224 left all of its 304,326,632 parameters trainable "
          "(\"not transfer learning\")",
          "full fine-tuning of a pretrained ViT-Large",
          "trainable share and relative change per block under full fine-tuning, beside head-only, last blocks and LoRA",
          "trainable_pct", "base", "head"),
    Claim("F5", "a ~160k-parameter ViT gave clean maps; the 300M-parameter ViT-L gave odd, blocky maps",
          "a small ViT trained from scratch beside a fine-tuned ViT-Large",
          "relevance mass of the default ViT (~150k parameters) against one ~10x larger", "relevance_mass", "base", "big"),
)
BY_FINDING = {c.finding: c for c in CLAIMS}


def spread(values: list[float]) -> float:
    """Half the range of one setting's seeds (NaN with fewer than two)."""
    v = [x for x in values if not np.isnan(x)]
    return (max(v) - min(v)) / 2 if len(v) > 1 else float("nan")


def compare(higher: list[float], lower: list[float]) -> dict:
    """The mean difference higher - lower, judged by the larger spread of the two settings.

    ``real`` is None when either side has fewer than two seeds (no spread of its own measured).
    """
    h = [x for x in higher if not np.isnan(x)]
    lo = [x for x in lower if not np.isnan(x)]
    if not h or not lo:
        return {"diff": float("nan"), "spread": float("nan"), "real": None, "n": (len(h), len(lo))}
    diff = float(np.mean(h) - np.mean(lo))
    half = max(spread(h), spread(lo)) if len(h) > 1 and len(lo) > 1 else float("nan")
    real = None if np.isnan(half) else abs(diff) > max(half, 1e-9)
    return {"diff": diff, "spread": half, "real": real, "n": (len(h), len(lo))}


def noise_word(c: dict) -> str:
    """'real', 'within noise' or 'not judged (one seed)', with the difference and the spread."""
    if np.isnan(c["diff"]):
        return "not measured"
    n = f"seeds {c['n'][0]} and {c['n'][1]}"
    if c["real"] is None:
        return f"not judged: one seed, no spread of its own (difference {c['diff']:+.3f}; {n})"
    return (f"{'real' if c['real'] else 'within noise'} (difference {c['diff']:+.3f}, spread ±{c['spread']:.3f} "
            f"of the settings compared; {n})")


def answer(c: dict) -> str:
    """The source's direction held? 'yes' (real and the same way), 'no' (real and the other way), 'within noise'."""
    if c["real"] is None:
        return "not judged"
    if not c["real"]:
        return "within noise"
    return "yes" if c["diff"] > 0 else "no"


def verdict(claim: Claim, c: dict, measured: str) -> str:
    """The finding's sentence: "The source found X; here Y: agrees / contradicts, real / within noise"."""
    said = answer(c)
    way = {"yes": "this agrees with the source", "no": "this contradicts the source",
           "within noise": "this neither confirms nor contradicts it", "not judged": "the claim is not judged here"}[said]
    return f"**{claim.finding}, the source found** {claim.claim}. **Here** {measured}: {noise_word(c)}; {way} (**{said}**)."


def claims_table() -> list[str]:
    """The table at the top of the report."""
    lines = ["## The source's claims, and what tests them", "",
             "| finding | the source found | its setting | measured here |", "|---|---|---|---|"]
    lines += [f"| {c.finding} | {c.claim} | {c.setting} | {c.measure} |" for c in CLAIMS]
    return lines + ["", "Each finding below ends with its verdict built from this table: *yes* (the source's direction, beyond "
                    "the spread of the settings compared), *no* (the other direction, beyond it), *within noise*, or *not judged* "
                    "where a setting ran with one seed.", ""]

"""Out-of-distribution guard: how unlike the training data a part is, as one score with a calibrated threshold.

Three views of "unlike", combined:

- **pixel**: the RT channels of the part, z-scored by the unit space, over the whole image. A part
  whose views match the rig (aligned, right cameras, right scale) keeps most pixels near z = 0; a
  defect lights up one terminal, a few percent of the pixels. Swapped or shifted views, a blank
  frame, a photo or noise move the channels everywhere. The score is the mean over pixels of the
  squared z (clipped at ``clip`` so that one bright defect cannot dominate).
- **pattern**: one minus the correlation, over the whole image, of each raw RT channel with the
  unit space's mean pattern (averaged over the three channels). Views swapped left/right flip d1 and
  d2 (correlation about -0.8 against at least 0.5 for real parts); shifted or foreign views lose it.
- **feature**: the Mahalanobis distance of the model's pooled feature (the classifier's input) to
  the nearest class mean, with one covariance shared by the classes (Lee et al. 2018), fitted on
  the training split.

Each component is standardised on the validation split as u = (log s - mu) / sigma and the
combined score is the largest u. The threshold is the larger of two estimates of the combined
score's (1 - alpha) quantile on in-distribution parts: the normal-theory one (each log-score normal
and independent, each component at alpha' = 1 - (1 - alpha)^(1/3)) and the empirical one on the
validation split; the larger, because the feature distance has a heavier tail than a normal. The
rate it flags on the validation split is reported beside it.

All functions are pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

COMPONENTS = ("pixel", "pattern", "feature")


def pixel_score(z: np.ndarray, clip: float) -> np.ndarray:
    """(N, 3, H, W) unit-space z-scores -> (N,) mean over pixels of min(mean_c z_c^2, clip)."""
    e = np.mean(np.square(z, dtype=np.float64), axis=1)
    return np.minimum(e, clip).reshape(len(z), -1).mean(axis=1)


def pattern_score(z: np.ndarray, mean: np.ndarray, std: np.ndarray, eps: float) -> np.ndarray:
    """(N, 3, H, W) z-scores and the unit space's (3, H, W) mean/std -> (N,) 1 - mean_c corr(d_c, mean_c).

    d = z * (std + eps) + mean are the raw channels. A channel with no variation correlates 0.
    """
    m = np.asarray(mean, dtype=np.float32)
    d = np.asarray(z, dtype=np.float32) * (np.asarray(std, dtype=np.float32) + np.float32(eps)) + m
    x = d.reshape(len(d), 3, -1)
    x = x - x.mean(axis=2, keepdims=True)
    t = m.reshape(3, -1) - m.reshape(3, -1).mean(axis=1, keepdims=True)
    num = np.einsum("ncp,cp->nc", x, t).astype(np.float64)
    den = (np.linalg.norm(x, axis=2) * np.linalg.norm(t, axis=1)).astype(np.float64)
    r = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
    return 1.0 - r.mean(axis=1)


@dataclass(frozen=True)
class FeatureSpace:
    """Class means (K, D) and the shared precision matrix (D, D) of the model's pooled features."""

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, n_classes: int, shrinkage: float = 1e-3) -> "FeatureSpace":
        """features (N, D), labels (N,) in [0, n_classes). Classes absent from ``labels`` get no mean."""
        f = np.asarray(features, dtype=np.float64)
        present = [k for k in range(n_classes) if np.any(labels == k)]
        means = np.stack([f[labels == k].mean(axis=0) for k in present])
        centred = f - means[np.searchsorted(present, labels)]
        cov = centred.T @ centred / max(len(f) - len(present), 1)
        cov += shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))  # well-conditioned for few parts
        return cls(means.astype(np.float64), np.linalg.inv(cov))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) squared Mahalanobis distance to the nearest class mean."""
        d = np.asarray(features, dtype=np.float64)[:, None, :] - self.means[None]
        return np.einsum("nkd,de,nke->nk", d, self.precision, d).min(axis=1)


@dataclass(frozen=True)
class Calibration:
    """Standardisation of each component and the threshold of the combined score."""

    clip: float
    alpha: float
    centre: dict = field(default_factory=dict)  # component -> mean of log score on val
    scale: dict = field(default_factory=dict)  # component -> std of log score on val
    threshold: float = math.inf
    n_val: int = 0
    n_val_flagged: int = 0

    def combined(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """component -> (N,) raw scores  ->  (N,) combined score (max of standardised log-scores)."""
        u = [(np.log(np.maximum(scores[c], 1e-12)) - self.centre[c]) / self.scale[c] for c in COMPONENTS]
        return np.max(np.stack(u), axis=0)

    def to_dict(self) -> dict:
        return {"clip": self.clip, "alpha": self.alpha, "centre": self.centre, "scale": self.scale,
                "threshold": self.threshold, "n_val": self.n_val, "n_val_flagged": self.n_val_flagged}

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(float(d["clip"]), float(d["alpha"]), {c: float(d["centre"][c]) for c in COMPONENTS},
                   {c: float(d["scale"][c]) for c in COMPONENTS}, float(d["threshold"]), int(d["n_val"]), int(d["n_val_flagged"]))


def calibrate(val_scores: dict[str, np.ndarray], alpha: float, clip: float) -> Calibration:
    """Fit the standardisation on validation scores (component -> (N,)) and set the threshold.

    threshold = max(Phi^-1(1 - alpha'), the (1 - alpha) quantile of the combined val scores),
    alpha' = 1 - (1 - alpha)^(1/C) for C components.
    """
    centre, scale = {}, {}
    for c in COMPONENTS:
        logs = np.log(np.maximum(np.asarray(val_scores[c], dtype=np.float64), 1e-12))
        centre[c] = float(logs.mean())
        scale[c] = float(max(logs.std(ddof=1) if len(logs) > 1 else 0.0, 1e-6))
    per_component = 1.0 - (1.0 - alpha) ** (1.0 / len(COMPONENTS))
    cal = Calibration(clip, alpha, centre, scale)
    combined = cal.combined(val_scores)
    threshold = max(NormalDist().inv_cdf(1.0 - per_component), float(np.quantile(combined, 1.0 - alpha)))
    flagged = int(np.sum(combined > threshold))
    return Calibration(clip, alpha, centre, scale, threshold, len(next(iter(val_scores.values()))), flagged)


def rate(k: int, n: int, z: float = 1.96) -> dict:
    """k of n with its rate and Wilson 95 % interval (rounded): {"k", "n", "rate", "low", "high"}."""
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "low": None, "high": None}
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return {"k": int(k), "n": int(n), "rate": round(p, 6), "low": round(max(c - h, 0.0), 6), "high": round(min(c + h, 1.0), 6)}

"""The OOD guard reads the fitted std, not the composite's floor (nsoartc.std_floor): a part shifted into the empty
background stands out as far as it did before the floor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.deploy.engine import ood_scores

EPS = 1e-6


class NoFeatures:
    def distance(self, features):
        return np.zeros(len(features))


def test_the_ood_scores_of_a_floored_unit_space_are_the_fitted_ones():
    rng = np.random.default_rng(0)
    good = np.concatenate([rng.normal(0, 0.01, (200, 3, 8, 4)), rng.normal(0, 1.0, (200, 3, 8, 4))], axis=-1).astype(np.float32)
    space = UnitSpace.fit(good)
    floored = space.floored(0.25)
    shifted = np.roll(good[:5], 2, axis=-1)  # the part moved into the background
    plain = ood_scores(SimpleNamespace(unit=space, eps=EPS), space.zscore(shifted, EPS), np.zeros((5, 2)), NoFeatures(), 50.0)
    got = ood_scores(SimpleNamespace(unit=floored, eps=EPS), floored.zscore(shifted, EPS), np.zeros((5, 2)), NoFeatures(), 50.0)
    np.testing.assert_allclose(got["pixel"], plain["pixel"], rtol=1e-4)
    np.testing.assert_allclose(got["pattern"], plain["pattern"], rtol=1e-4, atol=1e-6)
    # ... where the floored z-scores alone would hide most of it
    from vitinspect.deploy.ood_guard import pixel_score

    assert pixel_score(floored.zscore(shifted, EPS), 50.0).mean() < 0.5 * plain["pixel"].mean()

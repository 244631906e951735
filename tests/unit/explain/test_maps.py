"""Attention maps and their scores, on hand-made attentions and on a real (tiny) ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitinspect.explain import maps as explain
from vitinspect.model.vit import build_scratch


def random_attentions(b=2, heads=3, g=3, layers=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = g * g + 1
    return tuple(torch.softmax(torch.randn(b, heads, t, t, generator=gen) * 2, dim=-1) for _ in range(layers))


def one_patch_attentions(patch: int, b=1, heads=2, g=4, layers=3):
    """Every query of every head attends to patch ``patch`` (token patch + 1) only."""
    t = g * g + 1
    a = torch.zeros(b, heads, t, t)
    a[..., patch + 1] = 1.0
    return tuple(a.clone() for _ in range(layers))


def test_rollout_matches_direct_matrix_computation():
    att = random_attentions()
    got = explain.attention_rollout(att)
    t = att[0].shape[-1]
    expected = []
    for bi in range(att[0].shape[0]):
        r = np.eye(t)
        for a in att:
            m = a[bi].mean(0).numpy().astype(np.float64) + np.eye(t)
            m = m / m.sum(axis=1, keepdims=True)
            r = m @ r
        expected.append(r[0, 1:].reshape(3, 3))
    np.testing.assert_allclose(got.numpy(), np.stack(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.0), ("min", 0.5), ("mean", 0.9)])
def test_rollout_layers_are_row_stochastic(fusion, discard):
    for layer in explain.rollout_layers(random_attentions(), fusion, discard):
        np.testing.assert_allclose(layer.sum(-1).numpy(), 1.0, atol=1e-5)
        assert (layer >= 0).all()


def test_discard_keeps_the_cls_row_and_column():
    att = random_attentions(layers=1)
    kept = explain.rollout_layers(att, "mean", 0.95)[0]
    fused = att[0].mean(1)
    t = fused.shape[-1]
    eye = torch.eye(t)
    # CLS row and column survive: after adding I and renormalising, they are non-zero.
    assert (kept[:, 0, :] > 0).all() and (kept[:, :, 0] > 0).all()
    # Most other entries are gone.
    off = kept[:, 1:, 1:] - eye[1:, 1:] * kept[:, 1:, 1:]
    assert (off == 0).float().mean() > 0.8
    assert fused.shape == kept.shape


@pytest.mark.parametrize("patch", [0, 5, 15])
def test_every_map_peaks_on_the_one_attended_patch(patch):
    att = one_patch_attentions(patch)
    for m in (explain.attention_rollout(att), explain.last_layer_cls(att), explain.attention_rollout(att, "max", 0.5)):
        assert int(m.reshape(-1).argmax()) == patch


class OnePatchViT(torch.nn.Module):
    """A stand-in whose attention (computed from a parameter) looks at one patch, for the gradient rule."""

    def __init__(self, patch, g=4, layers=2):
        super().__init__()
        self.patch, self.g, self.layers = patch, g, layers
        self.logit = torch.nn.Parameter(torch.ones(1))

    def forward(self, pixel_values, output_attentions=True):
        b, t = pixel_values.shape[0], self.g * self.g + 1
        scores = torch.full((b, 2, t, t), -20.0)
        scores[..., self.patch + 1] = 20.0
        att = tuple(torch.softmax(scores * self.logit, dim=-1) for _ in range(self.layers))
        value = torch.zeros(b, t)
        value[:, self.patch + 1] = 1.0
        logits = torch.stack([sum((a.mean(1)[:, 0] * value).sum(-1) for a in att)] * 2, dim=-1)
        return type("Out", (), {"attentions": att, "logits": logits})()


def test_gradient_attention_peaks_on_the_attended_patch():
    m = explain.gradient_attention(OnePatchViT(patch=6), torch.zeros(1, 3, 8, 8))
    assert int(m.reshape(-1).argmax()) == 6


def test_relevance_mass_of_a_uniform_map_is_the_area_fraction():
    mask = np.zeros((8, 8), bool)
    mask[2:5, 1:3] = True
    assert explain.relevance_mass(np.ones((8, 8)), mask) == pytest.approx(mask.mean())
    assert explain.area_fraction(mask) == pytest.approx(6 / 64)


def test_pointing_game_and_rank_accuracy_known_answers():
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True  # two pixels
    hit = np.zeros((4, 4))
    hit[0, 1], hit[3, 3] = 5, 4  # peak inside; second best outside
    miss = np.zeros((4, 4))
    miss[2, 2], miss[0, 0] = 5, 4
    assert explain.pointing_game(hit, mask) is True
    assert explain.pointing_game(miss, mask) is False
    assert explain.relevance_rank_accuracy(hit, mask) == pytest.approx(0.5)
    both = np.zeros((4, 4))
    both[0, 0], both[0, 1] = 3, 2
    assert explain.relevance_rank_accuracy(both, mask) == pytest.approx(1.0)
    assert explain.relevance_mass(both, mask) == pytest.approx(1.0)
    batch = explain.pointing_game(np.stack([hit, miss]), np.stack([mask, mask]))
    assert batch.tolist() == [True, False]


def test_attentions_really_come_from_the_model(tiny_params):
    model = build_scratch(tiny_params.model, 32, ["passed", "tilt_x", "tilt_y", "retracted"], seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    att = explain.model_attentions(model, x)
    assert len(att) == tiny_params.model.layers and all(a is not None for a in att)
    assert att[0].shape == (2, tiny_params.model.heads, 17, 17)
    maps = explain.compute_maps(model, x, ["rollout", "last_layer", "gradient"])
    for m in maps.values():
        assert m.shape == (2, 4, 4) and np.isfinite(m).all()
    # A model running SDPA returns no attentions: the guard must say so, not return garbage.
    model.config._attn_implementation = "sdpa"
    model.set_attn_implementation("sdpa")
    with pytest.raises((RuntimeError, ValueError)):
        explain.model_attentions(model, x)

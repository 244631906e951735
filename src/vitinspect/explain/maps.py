"""Attention maps of a ViT and scores of a map against a known defect mask.

Maps take the model's ``attentions``: a tuple of L tensors (B, heads, T, T),
T = 1 + g*g (index 0 is the CLS token), rows are queries, post-softmax. They
return (B, g, g) maps over the patch grid. Scores take maps and boolean masks
of the same (H, W) (or batched (B, H, W)) and return numbers in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vitinspect.model.stem import crop_of


def _grid(t: int) -> int:
    g = math.isqrt(t - 1)
    if g * g != t - 1:
        raise ValueError(f"token count {t} is not 1 + a square patch grid")
    return g


def _cls_map(rows: torch.Tensor) -> torch.Tensor:
    """(B, T, T) -> (B, g, g): the CLS row over the patches."""
    g = _grid(rows.shape[-1])
    return rows[:, 0, 1:].reshape(-1, g, g)


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, heads, T, T) -> (B, T, T) by the mean, max or min over heads."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be mean, max or min, got {head_fusion!r}")


def rollout_layers(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0) -> list[torch.Tensor]:
    """The per-layer matrices A_hat of rollout, each (B, T, T) and row-stochastic.

    A_hat = rownorm(fuse(A) + I), after zeroing the lowest ``discard_ratio`` share
    of each fused matrix's patch-to-patch weights; the CLS row and column are never dropped.
    """
    out = []
    for attention in attentions:
        a = fuse_heads(attention.detach().float(), head_fusion)
        b, t, _ = a.shape
        if discard_ratio > 0:
            rank = a.clone()
            rank[:, 0, :] = float("inf")  # protect the CLS row and column
            rank[:, :, 0] = float("inf")
            k = int((t - 1) * (t - 1) * discard_ratio)
            if k:
                drop = rank.view(b, -1).topk(k, dim=-1, largest=False).indices
                a = a.view(b, -1).scatter(-1, drop, 0.0).view(b, t, t)
        a = a + torch.eye(t, dtype=a.dtype, device=a.device)
        out.append(a / a.sum(dim=-1, keepdim=True))  # keepdim: rows, not columns, sum to 1
    return out


def attention_rollout(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): R = A_hat_L ... A_hat_1, CLS row -> (B, g, g)."""
    layers = rollout_layers(attentions, head_fusion, discard_ratio)
    r = layers[0]
    for a in layers[1:]:
        r = a @ r
    return _cls_map(r)


def last_layer_cls(attentions) -> torch.Tensor:
    """The last layer's CLS-row attention over the patches, mean over heads -> (B, g, g)."""
    return _cls_map(attentions[-1].detach().float().mean(dim=1))


def gradient_attention(model, pixel_values: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Class-specific relevance (Chefer et al. 2021, gradient x attention rule) -> (B, g, g).

    Per layer A_bar = mean over heads of clamp(dy_target/dA * A, min=0), then
    R <- R + A_bar @ R from R = I; the map is R's CLS row over the patches.
    ``target``: (B,) class indices; default the model's own prediction.
    The model must run eager attention (SDPA returns no attentions).
    """
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        out = model(pixel_values=pixel_values, output_attentions=True)
        attentions = out.attentions
        if not attentions or any(a is None for a in attentions):
            raise RuntimeError("the model returned no attentions: build or load it with attn_implementation='eager'")
        for a in attentions:
            a.retain_grad()
        if target is None:
            target = out.logits.argmax(dim=-1)
        out.logits.gather(1, target.view(-1, 1).to(out.logits.device)).sum().backward()
    b, _, t, _ = attentions[0].shape
    r = torch.eye(t).expand(b, t, t).clone()
    for a in attentions:
        cam = (a.grad.float() * a.detach().float()).clamp(min=0).mean(dim=1).cpu()
        r = r + cam @ r
    model.zero_grad(set_to_none=True)
    return _cls_map(r)


def upsample(maps: torch.Tensor | np.ndarray, size: int, box=None) -> np.ndarray:
    """(B, g, g) -> (B, size, size) float32, bilinear. ``box`` (top, bottom, left, right): the part of the frame
    the tokens cover (a model that crops, :func:`vitinspect.model.stem.crop_of`); the map fills that box and
    the rest of the frame, which the model never saw, is 0."""
    m = torch.as_tensor(np.asarray(maps), dtype=torch.float32).unsqueeze(1)
    if box is None:
        return torch.nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    top, bottom, left, right = box
    out = np.zeros((len(m), size, size), dtype=np.float32)
    out[:, top:bottom, left:right] = torch.nn.functional.interpolate(m, size=(bottom - top, right - left), mode="bilinear",
                                                                     align_corners=False)[:, 0].numpy()
    return out


# --------------------------------------------------------------------------- scores


def _batched(maps, masks):
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    single = maps.ndim == 2
    if single:
        maps, masks = maps[None], masks[None]
    if maps.shape != masks.shape:
        raise ValueError(f"map and mask shapes differ: {maps.shape} vs {masks.shape}")
    return maps.reshape(len(maps), -1), masks.reshape(len(masks), -1), single


def pointing_game(maps, masks):
    """Is each map's peak inside its mask? (H, W) -> bool, (B, H, W) -> (B,) bool."""
    m, k, single = _batched(maps, masks)
    hit = k[np.arange(len(m)), m.argmax(axis=1)]
    return bool(hit[0]) if single else hit


def relevance_mass(maps, masks):
    """Share of each map's (non-negative) mass inside its mask, in [0, 1]; a uniform map gives the area fraction."""
    m, k, single = _batched(maps, masks)
    m = np.clip(m, 0, None)
    total = m.sum(axis=1)
    inside = (m * k).sum(axis=1)
    share = np.divide(inside, total, out=k.mean(axis=1), where=total > 0)  # an all-zero map counts as uniform
    return float(share[0]) if single else share


def relevance_rank_accuracy(maps, masks):
    """Share of each map's top-|mask| pixels that lie inside its mask (ties broken by pixel order)."""
    m, k, single = _batched(maps, masks)
    acc = np.zeros(len(m))
    for i in range(len(m)):
        n = int(k[i].sum())
        if n:
            top = np.argsort(-m[i], kind="stable")[:n]
            acc[i] = k[i][top].mean()
    return float(acc[0]) if single else acc


def area_fraction(masks):
    """The score of a uniform (or random) map for every measure above: the mask's share of the image."""
    _, k, single = _batched(np.zeros(np.shape(masks)), masks)
    frac = k.mean(axis=1)
    return float(frac[0]) if single else frac


def model_attentions(model, pixel_values: torch.Tensor):
    """Forward with ``output_attentions``; fails loudly if the attentions are missing (the SDPA trap)."""
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_attentions=True)
    if not out.attentions or any(a is None for a in out.attentions):
        raise RuntimeError("the model returned no attentions: build or load it with attn_implementation='eager'")
    return out.attentions


def compute_maps(model, pixel_values: torch.Tensor, methods, head_fusion: str = "mean",
                 discard_ratio: float = 0.0, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Every requested map for a batch of images: method -> (N, g, g) float32.

    methods: any of ``rollout``, ``last_layer``, ``gradient``.
    """
    maps: dict[str, list] = {m: [] for m in methods}
    for i in range(0, len(pixel_values), batch_size):
        x = pixel_values[i:i + batch_size]
        if "rollout" in maps or "last_layer" in maps:
            att = model_attentions(model, x)
            if "rollout" in maps:
                maps["rollout"].append(attention_rollout(att, head_fusion, discard_ratio))
            if "last_layer" in maps:
                maps["last_layer"].append(last_layer_cls(att))
        if "gradient" in maps:
            maps["gradient"].append(gradient_attention(model, x))
    return {m: torch.cat(v).numpy().astype(np.float32) for m, v in maps.items()}


def score_maps(maps: np.ndarray, masks: np.ndarray, box=None) -> dict[str, np.ndarray]:
    """(N, g, g) maps against (N, H, W) masks: per-sample scores and the uniform-map baseline. ``box``: the
    frame's box the tokens cover (:func:`upsample`)."""
    up = upsample(maps, masks.shape[-1], box)
    return {
        "relevance_mass": relevance_mass(up, masks),
        "pointing_game": pointing_game(up, masks).astype(np.float64),
        "rank_accuracy": relevance_rank_accuracy(up, masks),
        "baseline": area_fraction(masks),
    }


@torch.no_grad()
def high_norm_tokens(model, pixel_values: torch.Tensor, masks: np.ndarray, factor: float = 3.0) -> dict[str, float]:
    """Look for high-norm "artifact" tokens (Darcet et al. 2023, "Vision Transformers Need Registers").

    The L2 norm of every patch token leaving the last block (before the final norm) is compared
    with the median over all patch tokens of these images. Returns the largest norm over that
    median, the share of patch tokens above ``factor`` x median, and the share of those that
    touch the defect mask (beside ``mask_patch_share``, the share of all patches that do: a
    token placed at random scores it). masks: (N, H, W) bool.
    """
    model.eval()
    hidden = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1][:, 1:].float()
    norms = hidden.norm(dim=-1)  # (N, T)
    g = _grid(norms.shape[1] + 1)
    box = crop_of(model.config)  # a model that crops: its tokens cover that box of the frame
    if box is not None:
        masks = np.asarray(masks)[:, box[0]:box[1], box[2]:box[3]]
    m = torch.from_numpy(np.ascontiguousarray(masks)).float().unsqueeze(1)
    in_mask = (torch.nn.functional.adaptive_max_pool2d(m, g).flatten(1) > 0)  # (N, T): patch touches the mask
    median = norms.median()
    high = norms > factor * median
    return {
        "max_over_median": round(float(norms.max() / median), 4),
        "high_norm_share": round(float(high.float().mean()), 4),
        "high_norm_in_mask": round(float(in_mask[high].float().mean()), 4) if high.any() else None,
        "mask_patch_share": round(float(in_mask.float().mean()), 4),
    }


def headline_scores(report: dict) -> dict:
    """The few attention figures worth a metric column: relevance mass of each method on the model's
    own input, beside the uniform-map baseline. The full table (both inputs, every score, per class)
    stays in the report it is taken from."""
    own = report["model_input"]
    methods = report["methods"]
    first = next(iter(methods.values()), {})
    return {"model_input": own, "baseline": first.get(own, {}).get("baseline"),
            "relevance_mass": {m: v[own]["relevance_mass"] for m, v in methods.items()}}


def mean_scores(scores: dict[str, np.ndarray], labels: np.ndarray, classes: list[str]) -> dict:
    """Mean of each score over all parts and per class (only classes present), with the counts ``n``.

    scores: name -> (N,) per-part scores; labels: (N,) class indices into ``classes``.
    """
    def summary(sel):
        return {k: round(float(v[sel].mean()), 4) for k, v in scores.items()} | {"n": int(sel.sum())}

    per_class = {c: summary(labels == i) for i, c in enumerate(classes) if (labels == i).any()}
    return {**summary(np.ones(len(labels), dtype=bool)), "per_class": per_class}

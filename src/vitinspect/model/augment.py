"""``train.shift_px``: the one augmentation, a random integer shift of a training image.

Every channel of an image moves by the same (dy, dx) in [-N, N] px: the composite's channels, or the raw views
stacked as channels, so what one camera sees stays aligned with the others. The border is edge-padded. Never a
flip: left and right are different cameras. Shifts are drawn from torch's global generator, which the Trainer
seeds with ``train.seed`` and saves in every checkpoint, so a run is the same for a seed, resumed or not.
"""

from __future__ import annotations

import torch


def shift_batch(x: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): image i shows x[i] moved by its own (dy, dx), |dy|, |dx| <= n, edges repeated."""
    if n <= 0 or len(x) == 0:
        return x
    h, w = x.shape[-2:]
    d = torch.randint(-n, n + 1, (len(x), 2), generator=generator).tolist()
    padded = torch.nn.functional.pad(x, (n, n, n, n), mode="replicate")
    return torch.stack([padded[i, :, n - dy:n - dy + h, n - dx:n - dx + w] for i, (dy, dx) in enumerate(d)])


def shifted(convert, n: int):
    """``convert`` (uint8 images -> pixel values) followed by :func:`shift_batch`; ``convert`` itself when n is 0."""
    if n <= 0:
        return convert

    def convert_and_shift(images):
        return shift_batch(convert(images), n)

    return convert_and_shift

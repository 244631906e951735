"""Attention maps of defective test parts, scored against their defect masks (the ``attention`` stage).

Both representations of each part go through the trained model: the one it was trained on and the other
one (out of distribution for it). Parts without a mask (folders without mask.png) are drawn, never scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.explain.maps import compute_maps, headline_scores, high_norm_tokens, mean_scores, score_maps, upsample
from vitinspect.model.prediction import predict_proba, to_pixel_values
from vitinspect.model.stem import crop_of

MAP_INPUTS = ("raw", "nsoartc")  # composite.nsoartc.INPUTS in the report's order: the raw view first, as the source compared them
BATCH = 1024  # parts converted to float at a time (a multiple of compute_maps' batch: the same maps)
NO_MASKS = "no masks: no defective test part has a mask.png, so no map is scored (drawn only)"


@dataclass(frozen=True)
class Scored:
    """The maps of the N defective test parts and their scores.

    ``report``: every score per method x input x class, with the baseline (reports/attention.json);
    ``metrics``: its headline; ``maps``: input -> method -> (N, g, g) float32; ``rows``: (N,) index of each
    defective part in the test split; ``labels``: (N,) class indices; ``masks``: (N, S, S) bool;
    ``has_mask``: (N,) bool, the parts scored.
    """

    report: dict
    metrics: dict
    maps: dict
    rows: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    box: tuple | None = None  # the frame's box the model's tokens cover (vitinspect.model.stem.crop_of), None: all of it


def score_attention(model, spec, own: str, classes: list[str], cols: dict, good: int, settings) -> Scored:
    """Maps of every defective test part (label != ``good``) on both inputs, scored where a mask is.

    ``cols``: the test split's columns ``label`` (N,), ``mask`` (N, S, S) and both MAP_INPUTS (uint8 images);
    ``own``: the input the model was trained on; ``settings``: params' attention section (methods,
    head_fusion, discard_ratio).
    """
    p = settings
    box = crop_of(model.config)
    defective = cols["label"] != good
    labels, masks = cols["label"][defective], cols["mask"][defective].astype(bool)
    has_mask = masks.reshape(len(masks), -1).any(axis=1)

    maps, report = {}, {"model_input": own, "n_parts": int(has_mask.sum()), "methods": {}}
    if not has_mask.all():
        report.update({"n_defective": int(defective.sum()), "n_without_mask": int((~has_mask).sum())})
    if not has_mask.any():
        report["masks"] = NO_MASKS
    for name in MAP_INPUTS:
        images = cols[name][defective]
        parts = [compute_maps(model, to_pixel_values(images[i:i + BATCH], spec), p.methods, p.head_fusion, p.discard_ratio)
                 for i in range(0, len(images), BATCH)]
        maps[name] = {m: np.concatenate([c[m] for c in parts]) for m in p.methods}
    for method in p.methods if has_mask.any() else ():
        report["methods"][method] = {
            name: {"in_distribution": name == own, **mean_scores(score_maps(maps[name][method][has_mask], masks[has_mask], box),
                                                                 labels[has_mask], classes)}
            for name in MAP_INPUTS
        }
    if has_mask.any():
        report["token_norms"] = high_norm_tokens(model, to_pixel_values(cols[own][defective][has_mask], spec), masks[has_mask])
    metrics = headline_scores(report) | ({"masks": NO_MASKS} if not has_mask.any() else {})
    return Scored(report, metrics, maps, np.flatnonzero(defective), labels, masks, has_mask, box)


def panel_rows(scored: Scored, cols: dict, classes: list[str], k: int, panels: int, methods) -> list[dict]:
    """The figure rows of class ``k``'s first ``panels`` defective parts, one per method: label, mask (S, S),
    images and maps (S, S) upsampled, per input."""
    size = scored.masks.shape[-1]
    return [
        {"label": f"{classes[k]} #{j}\n{m}", "mask": scored.masks[j],
         "images": {n: cols[n][scored.rows[j]] for n in MAP_INPUTS},
         "maps": {n: upsample(scored.maps[n][m][j:j + 1], size, scored.box)[0] for n in MAP_INPUTS}}
        for j in np.flatnonzero(scored.labels == k)[:panels] for m in methods
    ]


def load_photos(extra: list[str], size: int) -> tuple[list[np.ndarray], list[str]]:
    """scikit-learn's bundled sample photos plus ``attention.extra_images``, as (size, size, 3) uint8, and
    their file names."""
    # Imported here, as the stage did: sklearn.datasets takes 1.2-1.5 s to import (measured), and only the
    # photos need it.
    from PIL import Image, UnidentifiedImageError
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    photos = [(Path(f).name, Image.fromarray(img)) for f, img in zip(sample.filenames, sample.images)]
    for path in extra:
        if not Path(path).is_file():  # a FIFO or device would block open() forever; a directory is no image either
            raise VitinspectError(f"params.yaml: attention.extra_images entry {path!r} is missing or not a regular file")
        try:
            with Image.open(path) as im:
                im.load()
                photos.append((Path(path).name, im.copy()))
        except Image.DecompressionBombError as exc:
            raise VitinspectError(f"params.yaml: attention.extra_images entry {path!r} is refused: {exc}") from None
        except (OSError, UnidentifiedImageError, ValueError):
            raise VitinspectError(f"params.yaml: attention.extra_images entry {path!r} is missing, empty or not an image") from None
    out = [np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)) for _, im in photos]
    return out, [n for n, _ in photos]


def photo_maps(model, spec, photos: list[np.ndarray], classes: list[str], settings) -> tuple[list[str], dict]:
    """The model's class for each photo ((S, S, 3) uint8) and its maps: method -> (P, S, S), upsampled."""
    p = settings
    pv = to_pixel_values(np.stack(photos), spec)
    preds = [classes[k] for k in predict_proba(model, pv).argmax(axis=1)]
    maps = {m: upsample(v, spec.size, crop_of(model.config)) for m, v in compute_maps(model, pv, p.methods, p.head_fusion, p.discard_ratio).items()}
    return preds, maps

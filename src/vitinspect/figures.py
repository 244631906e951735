"""Matplotlib figures for people: galleries and side-by-side panels. Returns figures; never writes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _first_of_each(labels, classes):
    labels = np.asarray(labels)
    return [(c, int(np.flatnonzero(labels == c)[0])) for c in classes if (labels == c).any()]


def gallery(cols: dict, classes, views) -> plt.Figure:
    """One row per class (its first part), one column per view, defect box in red."""
    rows = _first_of_each(cols["label"], classes)
    fig, axes = plt.subplots(len(rows), len(views), figsize=(1.8 * len(views), 1.8 * len(rows)), squeeze=False)
    for r, (cls, i) in enumerate(rows):
        for c, view in enumerate(views):
            ax = axes[r, c]
            ax.imshow(cols["views"][i, c], cmap="gray", vmin=0, vmax=255)
            x0, y0, x1, y1 = cols["bbox"][i]
            if x1 > x0 and view == "center":
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(view, fontsize=9)
            if c == 0:
                ax.set_ylabel(cls, fontsize=9)
    fig.tight_layout()
    return fig


def raw_vs_composite(raw, composite, labels, masks, classes) -> plt.Figure:
    """One row per class: raw centre view | NSOARTC composite | defect mask."""
    rows = _first_of_each(labels, classes)
    fig, axes = plt.subplots(len(rows), 3, figsize=(5.4, 1.8 * len(rows)), squeeze=False)
    for r, (cls, i) in enumerate(rows):
        for c, (img, title) in enumerate(((raw[i], "raw (centre)"), (composite[i], "NSOARTC"), (masks[i], "defect mask"))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255 if c < 2 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(cls, fontsize=9)
    fig.tight_layout()
    return fig

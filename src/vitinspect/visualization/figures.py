"""Matplotlib figures for people: galleries and side-by-side panels. Returns figures; never writes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _grid_cell(ax, column_title: str | None, row_label: str | None) -> None:
    """A cell of an image grid: no ticks; the column's title on the first row, the row's label on the first column."""
    ax.set_xticks([])
    ax.set_yticks([])
    if column_title is not None:
        ax.set_title(column_title, fontsize=9)
    if row_label is not None:
        ax.set_ylabel(row_label, fontsize=9)


def _finished(fig, axes, title: str) -> plt.Figure:
    """No ticks on any panel, the title above them, laid out."""
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _first_of_each(labels, classes):
    labels = np.asarray(labels)
    return [(c, int(np.flatnonzero(labels == c)[0])) for c in classes if (labels == c).any()]


def gallery(cols: dict, classes, views, mask: bool = False) -> plt.Figure:
    """One row per class (its first part), one column per view, defect box in red; with ``mask`` one more
    column: the defect mask (data.renderer: blender draws it; the 2-D renderer's figure keeps its columns)."""
    rows = _first_of_each(cols["label"], classes)
    n_cols = len(views) + bool(mask)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.8 * n_cols, 1.8 * len(rows)), squeeze=False)
    for r, (cls, i) in enumerate(rows):
        for c, view in enumerate(list(views) + (["mask"] if mask else [])):
            ax = axes[r, c]
            if view == "mask":
                ax.imshow(cols["mask"][i], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(cols["views"][i, c], cmap="gray", vmin=0, vmax=255)
            x0, y0, x1, y1 = cols["bbox"][i]
            if x1 > x0 and view == "center":
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="red", lw=1))
            _grid_cell(ax, view if r == 0 else None, cls if c == 0 else None)
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
            _grid_cell(ax, title if r == 0 else None, cls if c == 0 else None)
    fig.tight_layout()
    return fig


def _confusion_axes(ax, matrix: dict, title: str) -> None:
    """Draw a count matrix (rows: actual, columns: predicted) with counts in the cells, shaded by row share."""
    labels, counts, norm = matrix["labels"], np.asarray(matrix["counts"]), np.asarray(matrix["normalized"])
    k = len(labels)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(k), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=9)


def confusion_figure(matrix: dict, title: str = "test confusion matrix") -> plt.Figure:
    k = len(matrix["labels"])
    fig, ax = plt.subplots(figsize=(1.1 * k + 1.6, 1.0 * k + 1.2))
    _confusion_axes(ax, matrix, title)
    fig.tight_layout()
    return fig


def confusion_pair(left: dict | None, right: dict | None, left_title: str, right_title: str) -> plt.Figure:
    """Two confusion matrices side by side (a missing one is left blank)."""
    k = len((right or left)["labels"])
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.1 * k + 1.6), 1.0 * k + 1.2))
    for ax, matrix, title in ((axes[0], left, left_title), (axes[1], right, right_title)):
        if matrix is None:
            ax.set_axis_off()
            ax.set_title(f"{title}: none", fontsize=9)
        else:
            _confusion_axes(ax, matrix, title)
    fig.tight_layout()
    return fig


def _overlay(ax, image, heat, mask=None):
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    h = heat - heat.min()
    ax.imshow(h / h.max() if h.max() > 0 else h, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)


def attention_panels(rows: list[dict], title: str) -> plt.Figure:
    """One row per (part, method): for each representation, image | map overlay with the mask outline.

    rows: dicts with ``label`` (row title), ``images`` {input: image}, ``maps`` {input: (S, S) map}, ``mask`` (S, S).
    """
    inputs = list(rows[0]["images"]) if rows else []
    fig, axes = plt.subplots(max(len(rows), 1), 2 * len(inputs) or 1, figsize=(1.7 * 2 * max(len(inputs), 1), 1.7 * max(len(rows), 1)), squeeze=False)
    for r, row in enumerate(rows):
        for c, name in enumerate(inputs):
            img = row["images"][name]
            axes[r, 2 * c].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            axes[r, 2 * c].contour(row["mask"].astype(float), levels=[0.5], colors="red", linewidths=0.8)
            _overlay(axes[r, 2 * c + 1], img, row["maps"][name], row["mask"])
            if r == 0:
                axes[r, 2 * c].set_title(name, fontsize=8)
                axes[r, 2 * c + 1].set_title(f"{name}: map", fontsize=8)
        axes[r, 0].set_ylabel(row["label"], fontsize=7)
    return _finished(fig, axes, title)


def photo_panels(images: list[np.ndarray], maps: dict[str, np.ndarray], names: list[str], predictions: list[str]) -> plt.Figure:
    """Natural photographs through the model: the photo, then one overlay per method."""
    methods = list(maps)
    fig, axes = plt.subplots(len(images), 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 1.9 * len(images)), squeeze=False)
    for r, img in enumerate(images):
        axes[r, 0].imshow(img)
        axes[r, 0].set_ylabel(f"{names[r]}\n-> {predictions[r]}", fontsize=7)
        for c, m in enumerate(methods):
            _overlay(axes[r, c + 1], img, maps[m][r])
            if r == 0:
                axes[r, c + 1].set_title(m, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def change_bars(groups: dict[str, dict]) -> plt.Figure:
    """Mean relative change ||W - W0|| / ||W0|| per group, as bars (the head hatched: fresh init)."""
    names = [g for g, v in groups.items() if v["mean_relative_change"] is not None]
    values = [groups[g]["mean_relative_change"] for g in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(names) + 1.5), 3.2))
    bars = ax.bar(range(len(names)), values, color=["tab:gray" if n == "head" else "tab:blue" for n in names])
    for b, n in zip(bars, names):
        if n == "head":
            b.set_hatch("//")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("mean relative change")
    ax.set_title("how far training moved each part of the model", fontsize=9)
    fig.tight_layout()
    return fig


def study_panels(x: list[float], series: dict[str, list[list[float]]], xlabel: str, percent: set[str] = frozenset()) -> plt.Figure:
    """One panel per figure, each on its own y axis (rates of 0.1 % and of 50 % are both readable).

    series: name -> for every x, the values of each run (one per seed). The mean is drawn; where
    more than one seed ran, a bar spans the seeds' range (min to max) and the points are shown.
    Names in ``percent`` are shares drawn in %.
    """
    names = list(series)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.0), squeeze=False)
    log_x = bool(x) and min(x) > 0 and max(x) / min(x) >= 10
    for ax, name in zip(axes[0], names):
        scale = 100.0 if name in percent else 1.0
        runs = [np.asarray([v for v in vals if v == v], dtype=float) * scale for vals in series[name]]
        means = [r.mean() if len(r) else np.nan for r in runs]
        ax.plot(x, means, marker="o", color="tab:blue")
        for xi, r in zip(x, runs):
            if len(r) > 1:
                ax.errorbar([xi], [r.mean()], yerr=[[r.mean() - r.min()], [r.max() - r.mean()]], color="tab:red", capsize=4, lw=1.2)
                ax.scatter([xi] * len(r), r, s=10, color="tab:red", zorder=3)
        top = max([r.max() for r in runs if len(r)] or [1.0])
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.set_xlabel(xlabel)
        ax.set_title(name.replace("_", " ") + (" (%)" if name in percent else ""), fontsize=9)
        ax.grid(alpha=0.3)
    if any(len(v) > 1 for vals in series.values() for v in vals):
        fig.text(0.5, 0.005, "red: range over training seeds (min-max), points: single seeds", ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def inspection_panel(views: np.ndarray, view_names: list[str], composite: np.ndarray, heat: np.ndarray, title: str) -> plt.Figure:
    """One inspected part: its views (V, S, S), the composite (S, S, 3) and a map (S, S) over it."""
    n = len(view_names) + 2
    fig, axes = plt.subplots(1, n, figsize=(1.8 * n, 2.1), squeeze=False)
    for k, name in enumerate(view_names):
        axes[0, k].imshow(views[k], cmap="gray", vmin=0, vmax=255)
        axes[0, k].set_title(name, fontsize=8)
    axes[0, -2].imshow(composite)
    axes[0, -2].set_title("composite", fontsize=8)
    _overlay(axes[0, -1], composite, heat)
    axes[0, -1].set_title("gradient x attention", fontsize=8)
    return _finished(fig, axes, title)


def mae_panels(original, masked, reconstruction, pasted, title: str) -> plt.Figure:
    """One row per part: input | what the encoder saw | reconstruction | reconstruction with the visible patches.

    Each argument is (N, S, S, 3) in [0, 1].
    """
    columns = (("input", original), ("masked (encoder sees)", masked), ("reconstruction", reconstruction),
               ("reconstruction + visible", pasted))
    n = len(original)
    fig, axes = plt.subplots(n, len(columns), figsize=(1.9 * len(columns), 1.9 * n), squeeze=False)
    for r in range(n):
        for c, (name, images) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(images[r])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig

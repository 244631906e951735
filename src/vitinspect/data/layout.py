"""The terminal grid in numbers (pitch, base points, one cell per terminal) and the class counts.

The renderers draw by these rules (vitinspect.data.geometry) and params checks a params set against them
before anything is drawn (vitinspect.config); the peer and the gate summarise a part per terminal cell. All
read them here, so an edit to how a part is drawn reruns only the stages that draw.
"""

from __future__ import annotations

import numpy as np


def terminal_pitch(image_size: int, rows: int, cols: int) -> float:
    """Distance between neighbouring terminals of a ``rows x cols`` grid in an ``image_size`` px frame, px."""
    return 0.8 * image_size / max(rows, cols, 3)


def terminal_bases(image_size: int, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 2) base points (x, y) of the terminals, row-major, px: the grid centred in the frame."""
    pitch = terminal_pitch(image_size, rows, cols)
    c = image_size / 2
    xs = c + (np.arange(cols) - (cols - 1) / 2) * pitch
    ys = c + (np.arange(rows) - (rows - 1) / 2) * pitch
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def cell_boxes(image_size: int, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 4) integer boxes (x0, y0, x1, y1), end-exclusive, one per terminal, row-major.

    A terminal's cell is the pitch x pitch square centred on its base point, rounded to whole pixels and
    clipped to the image: neighbouring cells tile the terminal grid.
    """
    half = terminal_pitch(image_size, rows, cols) / 2
    b = terminal_bases(image_size, rows, cols)
    boxes = np.stack([b[:, 0] - half, b[:, 1] - half, b[:, 0] + half, b[:, 1] + half], axis=1)
    return np.clip(np.round(boxes), 0, image_size).astype(np.int64)


def class_counts(n_images: int, classes: list[str], passed_ratio: float) -> dict[str, int]:
    """Exact class sizes: round(passed_ratio * n) passed, the rest split evenly.

    When the defective parts do not split evenly the first defect classes get one more.
    """
    n_passed = int(round(passed_ratio * n_images))
    defects = [c for c in classes if c != "passed"]
    base, extra = divmod(n_images - n_passed, len(defects))
    counts = {c: base + (i < extra) for i, c in enumerate(defects)}
    return {"passed": n_passed, **counts} if "passed" in classes else counts

"""The synthetic lot's layout in numbers: the terminal pitch and the class counts.

The renderers draw by these rules (vitinspect.data.geometry) and params checks a params set against them
before anything is drawn (vitinspect.config), so both read them here, and an edit to how a part is drawn
reruns only the stages that draw.
"""

from __future__ import annotations


def terminal_pitch(image_size: int, rows: int, cols: int) -> float:
    """Distance between neighbouring terminals of a ``rows x cols`` grid in an ``image_size`` px frame, px."""
    return 0.8 * image_size / max(rows, cols, 3)


def class_counts(n_images: int, classes: list[str], passed_ratio: float) -> dict[str, int]:
    """Exact class sizes: round(passed_ratio * n) passed, the rest split evenly.

    When the defective parts do not split evenly the first defect classes get one more.
    """
    n_passed = int(round(passed_ratio * n_images))
    defects = [c for c in classes if c != "passed"]
    base, extra = divmod(n_images - n_passed, len(defects))
    counts = {c: base + (i < extra) for i, c in enumerate(defects)}
    return {"passed": n_passed, **counts} if "passed" in classes else counts

"""`vitinspect render`'s output: rendered parts written as part folders a user (or the folders source) reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitinspect.folders import LABELS_CSV, MASK


def write_rendered(data, n: int, seed: int, out: Path, chunk: int = 256) -> None:
    """Render the ``n`` parts that ``prepare`` renders for ``data`` with data.n_images = n and data.seed =
    ``seed`` into ``out`` as part folders (``<id>/<view>.png``, ``mask.png``), with ``truth.csv`` (for
    `vitinspect inspect`) and ``labels.csv`` (part_id, label, split and the record columns, exact), so
    ``out`` is a data set for ``data.source: folders`` that reads back as the same parts."""
    import dataclasses

    from PIL import Image

    from vitinspect.part_folders import write_rows
    from vitinspect.render import plan as render_plan
    from vitinspect.render import render_parts

    d = dataclasses.replace(data, n_images=int(n), seed=int(seed))
    labels, splits = render_plan(d)
    out.mkdir(parents=True, exist_ok=True)
    truth, rows = [], []
    for a in range(0, len(labels), chunk):
        cols = render_parts(d, range(a, min(a + chunk, len(labels))), labels)
        for k, pid in enumerate(cols["id"]):
            folder = out / pid
            folder.mkdir(exist_ok=True)
            for name, img in zip(d.views, cols["views"][k]):
                Image.fromarray(img).save(folder / f"{name}.png")
            Image.fromarray(cols["mask"][k] * np.uint8(255)).save(folder / f"{MASK}.png")
            tilt, i = cols["tilt"][k], a + k
            record = {"defect_terminal": int(cols["defect_terminal"][k]), "tilt_x": repr(float(tilt[0])),
                      "tilt_y": repr(float(tilt[1])), "retraction": repr(float(cols["retraction"][k]))}
            rows.append({"part_id": pid, "label": labels[i], "split": splits[i], **record})
            truth.append({"part": str(folder), "label": labels[i], **record})
    write_rows(out / "truth.csv", truth, list(truth[0]))
    write_rows(out / LABELS_CSV, rows, list(rows[0]))

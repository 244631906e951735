"""Stage `nsoartc`: RT-method composites, normalised by a unit space of passed training parts."""

from __future__ import annotations

import argparse
import sys

try:
    from vitinspect import cli  # first: it sets the offline environment before any third-party import
except ModuleNotFoundError:  # run by a Python that lacks the package (dvc outside the venv)
    sys.exit(f"error: {sys.executable} cannot import vitinspect; run `source .venv/bin/activate` first (or `make repro`)")

import numpy as np

from vitinspect.dataset import SPLITS, columns, label_names, nsoartc_features, to_dataset_dict
from vitinspect.errors import VitinspectError
from vitinspect.figures import raw_vs_composite
from vitinspect.nsoartc import UnitSpace, defect_contrast, double_eye, to_image
from vitinspect.params import load_params
from vitinspect.storage import all_or_nothing, atomic_path, dataset_meta, load_dataset_dir, save_dataset, save_figure, write_json

RECORD = ("id", "label", "defect_terminal", "tilt", "retraction", "bbox", "mask")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--parts", required=True, help="prepare's dataset directory")
    ap.add_argument("--out", required=True, type=cli.output_path, help="NSOARTC dataset directory")
    ap.add_argument("--unit-space", required=True, type=cli.output_path, help=".npz of the unit-space mean and std")
    ap.add_argument("--metrics", required=True, type=cli.output_path, help="JSON: class counts and defect contrast")
    ap.add_argument("--figure", required=True, type=cli.output_path, help="PNG: raw vs NSOARTC per class")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, views = params.nsoartc, params.data.views
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    stored = dataset_meta(args.parts).get("views")
    if stored != list(views):  # the composites depend on which view is which: never guess
        raise VitinspectError(f"{args.parts}: holds views {stored} but data.views lists {list(views)} (order matters); rerun prepare")

    cols = {s: columns(parts[s], RECORD + ("views",)) for s in SPLITS}
    channels = {}
    for s in SPLITS:
        v = cols[s]["views"].astype(np.float32) / 255.0
        channels[s] = double_eye({name: v[:, j] for j, name in enumerate(views)}, p.window, p.eps)

    passed = classes.index("passed")
    unit = channels["train"][cols["train"]["label"] == passed]
    if len(unit) < p.min_unit_space:
        raise VitinspectError(
            f"params.yaml: the unit space has {len(unit)} passed training parts, fewer than "
            f"nsoartc.min_unit_space={p.min_unit_space}; raise data.passed_ratio or data.n_images"
        )
    space = UnitSpace.fit(unit)

    merged = {k: [] for k in RECORD + ("split", "raw", "nsoartc", "z")}
    for s in SPLITS:
        z = space.zscore(channels[s], p.eps)
        n = len(z)
        for k in RECORD:
            merged[k].append(cols[s][k])
        merged["split"].append(np.array([s] * n))
        merged["raw"].append(cols[s]["views"][:, views.index("center")])
        merged["nsoartc"].append(to_image(z, p.gain))
        merged["z"].append(z)
    merged = {k: np.concatenate(v) for k, v in merged.items()}
    merged["id"] = list(merged["id"])

    size = merged["raw"].shape[-1]
    ds = to_dataset_dict(merged, nsoartc_features(classes, size), classes)
    labels = np.asarray(merged["label"])
    masks = merged["mask"].astype(bool)
    contrast = {
        c: round(defect_contrast(merged["z"][labels == i], masks[labels == i]), 4)
        for i, c in enumerate(classes)
        if c != "passed" and (labels == i).any()
    }
    split_names = merged["split"]
    counts = {s: {c: int(np.sum(labels[split_names == s] == i)) for i, c in enumerate(classes)} for s in SPLITS}
    names = np.array(classes)[labels]

    with all_or_nothing():
        write_json(args.metrics, {"counts": counts, "defect_contrast": contrast, "unit_space_size": space.n},
                   hint="check nsoartc.eps, nsoartc.window and the data params")
        save_figure(raw_vs_composite(merged["raw"], merged["nsoartc"], names, masks, classes), args.figure)
        with atomic_path(args.unit_space) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, mean=space.mean, std=space.std, n=np.int64(space.n))
        save_dataset(ds, args.out, classes=classes, input_views=list(views))
    print(f"nsoartc: unit space of {space.n} passed parts; defect contrast {contrast}")


if __name__ == "__main__":
    cli.run_stage(main)

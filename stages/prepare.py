"""Stage `prepare`: render the synthetic connector parts and a gallery of them."""

from __future__ import annotations

import argparse
import sys

try:
    from vitinspect import cli  # first: it sets the offline environment before any third-party import
except ModuleNotFoundError:  # run by a Python that lacks the package (dvc outside the venv)
    sys.exit(f"error: {sys.executable} cannot import vitinspect; run `source .venv/bin/activate` first (or `make repro`)")

from vitinspect.dataset import parts_features, to_dataset_dict
from vitinspect.figures import gallery
from vitinspect.params import load_params
from vitinspect.render import generate
from vitinspect.storage import all_or_nothing, save_dataset, save_figure


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, type=cli.output_path, help="dataset directory")
    ap.add_argument("--gallery", required=True, type=cli.output_path, help="PNG: one row per class, every view")
    args = ap.parse_args(argv)

    p = load_params(args.params).data
    cols = generate(p)
    ds = to_dataset_dict(cols, parts_features(p.classes, p.views, p.image_size), p.classes)
    with all_or_nothing():
        save_figure(gallery(cols, p.classes, p.views), args.gallery)
        save_dataset(ds, args.out, views=list(p.views), classes=list(p.classes))
    sizes = ", ".join(f"{k}={len(v)}" for k, v in ds.items())
    print(f"prepare: {len(cols['id'])} parts ({sizes}) -> {args.out}")


if __name__ == "__main__":
    cli.run_stage(main)

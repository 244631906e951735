"""Stage `attention`: attention maps of defective test parts, scored against their defect masks.

Both representations of each part go through the trained model: the one it was
trained on and the other one (out of distribution for it), as the study did.
"""

from __future__ import annotations

from pathlib import Path

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.core.errors import VitinspectError
from vitinspect.explain.maps import compute_maps, headline_scores, high_norm_tokens, mean_scores, score_maps, upsample
from vitinspect.visualization.figures import attention_panels, photo_panels
from vitinspect.model.prediction import model_and_test_split, predict_proba, to_pixel_values
from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, save_figure, write_json

INPUTS = ("raw", "nsoartc")


def load_photos(extra: list[str], size: int) -> tuple[list[np.ndarray], list[str]]:
    """scikit-learn's bundled sample photos plus ``attention.extra_images``, as (size, size, 3) uint8."""
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


NO_MASKS = "no masks: no defective test part has a mask.png, so no map is scored (drawn only)"


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--data", required=True, help="nsoartc's dataset directory")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: headline, relevance mass per method on the model's input")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="JSON: every score per method x input x class, with the baseline")
    ap.add_argument("--figures", required=True, type=runtime.output_path, help="directory of PNG panels")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p = params.attention
    runtime.set_threads(params.train.threads)
    model, own, spec, classes, cols = model_and_test_split(args.data, args.model, ["label", "mask", *INPUTS])
    good = params.data.good_class
    if good not in classes:
        raise VitinspectError(f"{args.data}: holds classes {classes}, without data.good_class {good!r}; run dvc repro")
    defective = cols["label"] != classes.index(good)
    labels, masks = cols["label"][defective], cols["mask"][defective].astype(bool)
    # Scored only against the masks there are: parts without mask.png (folders) are drawn, never scored.
    has_mask = masks.reshape(len(masks), -1).any(axis=1)

    maps, report = {}, {"model_input": own, "n_parts": int(has_mask.sum()), "methods": {}}
    if not has_mask.all():
        report.update({"n_defective": int(defective.sum()), "n_without_mask": int((~has_mask).sum())})
    if not has_mask.any():
        report["masks"] = NO_MASKS
    for name in INPUTS:  # converted to float 1,024 parts at a time (a multiple of compute_maps' batch: the same maps)
        images = cols[name][defective]
        parts = [compute_maps(model, to_pixel_values(images[i:i + 1024], spec), p.methods, p.head_fusion, p.discard_ratio)
                 for i in range(0, len(images), 1024)]
        maps[name] = {m: np.concatenate([c[m] for c in parts]) for m in p.methods}
    for method in p.methods if has_mask.any() else ():
        report["methods"][method] = {
            name: {"in_distribution": name == own, **mean_scores(score_maps(maps[name][method][has_mask], masks[has_mask]),
                                                                 labels[has_mask], classes)}
            for name in INPUTS
        }
    if has_mask.any():
        report["token_norms"] = high_norm_tokens(model, to_pixel_values(cols[own][defective][has_mask], spec), masks[has_mask])
    size = masks.shape[-1]
    photos, names = load_photos(p.extra_images, spec.size)  # a bad entry fails before anything is written
    with all_or_nothing(), atomic_path(args.figures, is_dir=True) as tmp:
        for i, c in enumerate(classes):
            idx = np.flatnonzero(labels == i)[: p.panels]
            rows = [
                {"label": f"{c} #{j}\n{m}", "mask": masks[j],
                 "images": {n: cols[n][defective][j] for n in INPUTS},
                 "maps": {n: upsample(maps[n][m][j:j + 1], size)[0] for n in INPUTS}}
                for j in idx for m in p.methods
            ]
            if rows:
                save_figure(attention_panels(rows, f"{c}: model trained on {own}"), tmp / f"{c}.png")
        pv = to_pixel_values(np.stack(photos), spec)
        preds = [classes[k] for k in predict_proba(model, pv).argmax(axis=1)]
        photo_maps = {m: upsample(v, spec.size) for m, v in compute_maps(model, pv, p.methods, p.head_fusion, p.discard_ratio).items()}
        save_figure(photo_panels(photos, photo_maps, names, preds), tmp / "photos.png")
        write_json(args.report, report)
        write_json(args.metrics, headline_scores(report) | ({"masks": NO_MASKS} if not has_mask.any() else {}))
    if not has_mask.any():
        print(f"attention: {NO_MASKS}; maps drawn for {int(defective.sum())} defective test parts, none scored")
    for method, by_input in report["methods"].items():
        line = ", ".join(f"{n}: mass {s['relevance_mass']:.3f} / point {s['pointing_game']:.3f}" for n, s in by_input.items())
        print(f"attention {method}: {line} (baseline {by_input[own]['baseline']:.3f})")


if __name__ == "__main__":
    runtime.run_stage(main)

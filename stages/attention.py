"""Stage `attention`: attention maps of defective test parts, scored against their defect masks.

Both representations of each part go through the trained model: the one it was
trained on and the other one (out of distribution for it), as the study did.
"""

from __future__ import annotations

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

from vitinspect.data.arrow import good_index
from vitinspect.explain.attention import MAP_INPUTS, NO_MASKS, load_photos, panel_rows, photo_maps, score_attention
from vitinspect.visualization.figures import attention_panels, photo_panels
from vitinspect.model.prediction import model_and_test_split
from vitinspect.config.params import load_params
from vitinspect.core.storage import all_or_nothing, atomic_path, save_figure, write_json


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
    model, own, spec, classes, cols = model_and_test_split(args.data, args.model, ["label", "mask", *MAP_INPUTS])
    scored = score_attention(model, spec, own, classes, cols, good_index(args.data, classes, params.data.good_class), p)
    photos, names = load_photos(p.extra_images, spec.size)  # a bad entry fails before anything is written
    with all_or_nothing(), atomic_path(args.figures, is_dir=True) as tmp:
        for k, c in enumerate(classes):
            rows = panel_rows(scored, cols, classes, k, p.panels, p.methods)
            if rows:
                save_figure(attention_panels(rows, f"{c}: model trained on {own}"), tmp / f"{c}.png")
        preds, maps = photo_maps(model, spec, photos, classes, p)
        save_figure(photo_panels(photos, maps, names, preds), tmp / "photos.png")
        write_json(args.report, scored.report)
        write_json(args.metrics, scored.metrics)
    if not scored.has_mask.any():
        print(f"attention: {NO_MASKS}; maps drawn for {len(scored.labels)} defective test parts, none scored")
    for method, by_input in scored.report["methods"].items():
        line = ", ".join(f"{n}: mass {s['relevance_mass']:.3f} / point {s['pointing_game']:.3f}" for n, s in by_input.items())
        print(f"attention {method}: {line} (baseline {by_input[own]['baseline']:.3f})")


if __name__ == "__main__":
    runtime.run_stage(main)

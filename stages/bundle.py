"""Stage `bundle`: the inspection bundle (model, unit space, NSOARTC settings, operating point, OOD
calibration, ONNX graph) and the OOD guard's figures on the test split and on a probe set."""

from __future__ import annotations

import dataclasses
import json

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.deploy import bundle as bundle_format
from vitinspect.data.arrow import SPLITS, columns, label_names
from vitinspect.core.errors import VitinspectError
from vitinspect.deploy.engine import OnnxEngine, composite, judge, ood_scores, verify_engine
from vitinspect.deploy.exported_net import InspectionNet, export_onnx, run
from vitinspect.model.vit import check_compatible, load_trained, trained_input
from vitinspect.composite.nsoartc import UnitSpace
from vitinspect.deploy.ood_guard import FeatureSpace, calibrate, rate
from vitinspect.config.params import defaults_dict, load_params
from vitinspect.deploy.probes import ood_probes
from vitinspect.core.storage import atomic_path, load_dataset_dir, write_json

CHUNK = 256
CHECK_PER_CLASS = 2  # check parts: the first test parts of each class (8 parts of 4 classes)
ARGMAX = {"class": "passed", "threshold": None, "source": "argmax (no operating point given)"}


def read_operating_point(path, classes) -> dict:
    if not path:
        return dict(ARGMAX)
    try:
        op = json.loads(open(path).read())
        t = op["threshold"]
        if op.get("class", "passed") not in classes or not (t is None or 0.0 <= float(t) <= 1.0):
            raise ValueError("class must be one of the classes and threshold null or in [0, 1]")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitinspectError(f"{path}: not an operating point ({type(exc).__name__}: {str(exc)[:120]})") from None
    return {"class": op.get("class", "passed"), "threshold": None if t is None else float(t), "source": str(path)}


def check_parts(b, engine, views, labels) -> bundle_format.CheckParts:
    """A few test parts, each class's first, with what the bundle gives them now (torch): every engine must
    give them back when the bundle is opened."""
    pick = [i for k in np.unique(labels) for i in np.flatnonzero(labels == k)[:CHECK_PER_CLASS]]
    v = views[np.sort(pick)]
    j = judge(b, engine, v)
    return bundle_format.CheckParts(v, j.proba.astype(np.float64), j.ood_score.astype(np.float64))


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory (the views)")
    ap.add_argument("--unit-space", required=True, help="nsoartc's unit space (.npz)")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--operating-point", default=None, help="evaluate's operating point JSON; argmax when absent")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="bundle directory")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: OOD headline figures")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="JSON: OOD figures per probe kind")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, data = params.bundle, params.data
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    cols = {s: columns(parts[s], ["views", "label"]) for s in SPLITS}
    cols = {s: {"views": c["views"].astype(np.uint8), "label": c["label"].astype(int)} for s, c in cols.items()}
    model = load_trained(args.model)
    input_name, spec = trained_input(model, args.model)
    check_compatible(model, classes, data.image_size, args.model)
    try:
        with np.load(args.unit_space) as u:
            unit = UnitSpace(u["mean"], u["std"], int(u["n"]))
    except (OSError, KeyError, ValueError) as exc:
        raise VitinspectError(f"{args.unit_space}: not a unit space ({type(exc).__name__})") from None
    op = read_operating_point(args.operating_point, classes) if args.operating_point else dict(ARGMAX, **{"class": data.good_class})
    net = InspectionNet(model, spec)
    engine = lambda images: run(net, images)  # noqa: E731

    data_dict = defaults_dict()["data"] | dataclasses.asdict(data)
    b = bundle_format.Bundle(args.out, list(data.views), classes, data.image_size, input_name, params.nsoartc.window,
                             params.nsoartc.gain, params.nsoartc.eps, unit, None, None, op, data_dict, {})

    def features_and_z(views):  # in chunks: the RT channels of a whole split are large
        out = [(engine(images)[1], z) for images, z in (composite(b, views[i:i + CHUNK]) for i in range(0, len(views), CHUNK))]
        return np.concatenate([f for f, _ in out]), np.concatenate([z for _, z in out])

    # The feature space from the training split; the calibration on val; the figures on test and probes.
    features = FeatureSpace.fit(features_and_z(cols["train"]["views"])[0], cols["train"]["label"], len(classes))
    val_features, val_z = features_and_z(cols["val"]["views"])
    calibration = calibrate(ood_scores(b, val_z, val_features, features, p.pixel_clip), p.false_alarm_rate, p.pixel_clip)
    b = dataclasses.replace(b, features=features, calibration=calibration)

    test = judge(b, engine, cols["test"]["views"])
    kinds = {k: judge(b, engine, v).ood_flag for k, v in ood_probes(cols["test"]["views"], data, p.shift_px, data.seed, p.probes_per_kind).items()}
    probes_flagged = np.concatenate(list(kinds.values()))
    headline = {
        "false_alarm_target": p.false_alarm_rate,
        "val": rate(calibration.n_val_flagged, calibration.n_val),
        "test_flagged": rate(int(test.ood_flag.sum()), len(test.ood_flag)),
        "probes_flagged": rate(int(probes_flagged.sum()), len(probes_flagged)),
    }
    report = {**headline, "by_kind": {k: rate(int(f.sum()), len(f)) for k, f in kinds.items()},
              "calibration": calibration.to_dict()}
    content = bundle_format.manifest(views=data.views, classes=classes, image_size=data.image_size, input_name=input_name,
                                     nsoartc=params.nsoartc, operating_point=op, calibration=calibration,
                                     data=data_dict, report=report)
    check = check_parts(b, engine, cols["test"]["views"], cols["test"]["label"])
    with atomic_path(args.out, is_dir=True) as tmp:
        bundle_format.write(tmp, content, unit, features, args.model,
                            lambda path: export_onnx(net, data.image_size, path, p.onnx_opset), check)
        written = bundle_format.load(tmp)  # the bundle proves itself before it replaces the old one
        verify_engine(written, OnnxEngine(written), written.check)
    write_json(args.report, report)
    write_json(args.metrics, {"ood": {k: v["rate"] for k, v in headline.items() if isinstance(v, dict)}})
    print(f"bundle: {args.out}; OOD flagged on test {headline['test_flagged']['k']}/{headline['test_flagged']['n']}, "
          f"on probes {headline['probes_flagged']['k']}/{headline['probes_flagged']['n']}; operating point: {op['source']}")


if __name__ == "__main__":
    runtime.run_stage(main)

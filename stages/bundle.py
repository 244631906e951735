"""Stage `bundle`: the inspection bundle (model, unit space, NSOARTC settings, operating point, OOD
calibration, ONNX graph) and the OOD guard's figures on the test split and on a probe set."""

from __future__ import annotations

import dataclasses

from _boot import runtime, stage_parser  # first: refuses a Python without vitinspect, sets the offline environment

import numpy as np

from vitinspect.deploy import bundle as bundle_format
from vitinspect.data.arrow import SPLITS, columns, label_names
from vitinspect.composite.nsoartc import load_unit_space
from vitinspect.deploy.build import build, read_operating_point
from vitinspect.deploy.engine import OnnxEngine, verify_engine
from vitinspect.deploy.exported_net import InspectionNet, export_onnx, run
from vitinspect.evaluation.gate import load_gate
from vitinspect.model.vit import check_compatible, load_trained, trained_input
from vitinspect.config.params import defaults_dict, load_params
from vitinspect.core.storage import atomic_path, load_dataset_dir, write_json


def main(argv=None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--parts", required=True, help="prepare's dataset directory (the views)")
    ap.add_argument("--unit-space", required=True, help="nsoartc's unit space (.npz)")
    ap.add_argument("--model", required=True, help="trained model directory")
    ap.add_argument("--operating-point", default=None, help="evaluate's operating point JSON; argmax when absent")
    ap.add_argument("--gate", required=True, help="evaluate's unit-space gate (.npz)")
    ap.add_argument("--out", required=True, type=runtime.output_path, help="bundle directory")
    ap.add_argument("--metrics", required=True, type=runtime.output_path, help="JSON: OOD headline figures")
    ap.add_argument("--report", required=True, type=runtime.output_path, help="JSON: OOD figures per probe kind")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    p, data = params.bundle, params.data
    runtime.set_threads(params.train.threads)  # the OOD statistics come from the network: the same bytes need the same threads
    parts = load_dataset_dir(args.parts)
    classes = label_names(parts["train"])
    cols = {s: columns(parts[s], ["views", "label"]) for s in SPLITS}
    cols = {s: {"views": c["views"].astype(np.uint8), "label": c["label"].astype(int)} for s, c in cols.items()}
    model = load_trained(args.model)
    input_name, spec = trained_input(model, args.model)
    check_compatible(model, classes, data.image_size, args.model)
    unit = load_unit_space(args.unit_space)
    op = read_operating_point(args.operating_point, classes, data.good_class)
    gate = load_gate(args.gate)
    net = InspectionNet(model, spec)
    built = build(args.out, cols, classes, lambda images: run(net, images), input_name=input_name, unit=unit,
                  operating_point=op, data=data, nsoartc=params.nsoartc, settings=p,
                  data_dict=defaults_dict()["data"] | dataclasses.asdict(data), gate=gate)
    with atomic_path(args.out, is_dir=True) as tmp:
        bundle_format.write(tmp, built.content, unit, built.bundle.features, args.model,
                            lambda path: export_onnx(net, data.image_size, path, p.onnx_opset), built.check, gate)
        written = bundle_format.load(tmp)  # the bundle proves itself before it replaces the old one
        verify_engine(written, OnnxEngine(written), written.check)
    write_json(args.report, built.report)
    write_json(args.metrics, built.metrics)
    test, probes = built.report["test_flagged"], built.report["probes_flagged"]
    print(f"bundle: {args.out}; OOD flagged on test {test['k']}/{test['n']}, "
          f"on probes {probes['k']}/{probes['n']}; operating point: {op['source']}")


if __name__ == "__main__":
    runtime.run_stage(main)

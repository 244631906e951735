"""Training levers, measured: train the ViT on a project's nsoartc dataset with params overrides, score its test split.

The lever table of docs/training.md ("Learning on realistic parts") was made with this. It trains through the train
stage's own functions (training_data, initial_model, run_training) with the project's params.yaml and the given
overrides, one seed after another, and appends one JSON line per run (test accuracy, defect macro-F1, per-class
recall, predicted-class counts, every test part's predicted class, the val curve, the train losses, wall seconds) to --out; --table prints the
markdown table of a results file, one row per run name (mean ± half the range over seeds).

    python benchmarks/levers.py run --project . --name recipe --seeds 0,1,2 --out levers.jsonl
    python benchmarks/levers.py run --project ../blender --name old --seeds 0,1,2 --set model.stem=patch \\
        --set train.epochs=10 --set train.batch_size=64 ... --out levers.jsonl
    python benchmarks/levers.py table levers.jsonl

The project needs `dvc repro nsoartc` done (data/nsoartc). Nothing here is tracked by DVC: seconds depend on
what else runs on the machine; compare rows made side by side only.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def convert(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value, value)


def with_overrides(params, sets: list[str]):
    """params with every ``section.key=value`` replaced (one level of nesting, as params.yaml's train/model keys)."""
    for s in sets:
        key, value = s.split("=", 1)
        section, name = key.split(".", 1)
        params = dataclasses.replace(params, **{section: dataclasses.replace(getattr(params, section), **{name: convert(value)})})
    return params


def run(args) -> None:
    sys.path.insert(0, str(Path(args.project) / "src"))  # the project's own library
    from vitinspect.config.params import load_params
    from vitinspect.core import runtime
    from vitinspect.core.storage import load_dataset_dir
    from vitinspect.data.arrow import MappedImages, columns
    from vitinspect.evaluation.decision import choose_threshold, rates_at
    from vitinspect.evaluation.metrics import epoch_metrics
    from vitinspect.model.prediction import predict_images
    from vitinspect.model.strategies import plain_model
    from vitinspect.model.training_run import initial_model, run_training, training_data

    p = with_overrides(load_params(Path(args.project) / "params.yaml"), args.set)
    runtime.set_threads(p.train.threads)
    ds = load_dataset_dir(Path(args.project) / "data/nsoartc")
    good = p.data.good_class
    for seed in [int(x) for x in args.seeds.split(",")]:
        t = dataclasses.replace(p.train, seed=seed)
        data = training_data(ds, t)
        model, spec = initial_model(p.model, seed, data, str(Path(args.project) / "models/pretrain"), "data/nsoartc",
                                    str(Path(args.project) / "data/unit_space.npz"))
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            done = run_training(model, spec, data, t, p.finetune, good, Path(tmp) / "checkpoints", str(Path(tmp) / "live"))
        wall = time.perf_counter() - start
        history = done.trainer.state.log_history
        evals = [e for e in history if "eval_loss" in e]
        labels = columns(ds["test"], ["label"])["label"]
        probs = predict_images(plain_model(done.model), MappedImages(ds["test"], data.column), spec)
        m = epoch_metrics(labels, probs.argmax(-1), data.classes, good)
        row = {"name": args.name, "project": str(args.project), "seed": seed, "sets": args.set, "wall": round(wall, 1),
               "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "macro_f1_defects": m["macro_f1_defects"],
               "recall_good": m[f"recall_{good}"], "recalls": {c: m[f"recall_{c}"] for c in data.classes},
               "pred_counts": np.bincount(probs.argmax(-1), minlength=len(data.classes)).tolist(),
               "test_predicted": probs.argmax(-1).tolist(),  # per test part, in the split's order: for paired intervals
               "val_macro_f1": [round(e.get("eval_macro_f1", 0.0), 3) for e in evals],
               "val_accuracy": [round(e.get("eval_accuracy", 0.0), 3) for e in evals],
               "train_loss": [round(e["loss"], 3) for e in history if "loss" in e]}
        lot_dir = Path(args.project) / "data/lot"
        if lot_dir.exists():  # the classifier alone on the lot at argmax: good parts called defective, defective called good
            lot = load_dataset_dir(lot_dir, splits=("lot",))["lot"]
            lot_labels = columns(lot, ["label"])["label"]
            lot_proba = predict_images(plain_model(done.model), MappedImages(lot, data.column), spec)
            lot_pred = lot_proba.argmax(-1)
            g = data.classes.index(good)
            row["lot_false_reject_argmax"] = [int(((lot_labels == g) & (lot_pred != g)).sum()), int((lot_labels == g).sum())]
            row["lot_escapes_argmax"] = [int(((lot_labels != g) & (lot_pred == g)).sum()), int((lot_labels != g).sum())]
            # ... and at its operating point: the threshold on p(good) chosen on val as evaluate chooses it
            val_proba = predict_images(plain_model(done.model), MappedImages(ds["val"], data.column), spec)
            chosen = choose_threshold(val_proba[:, g], columns(ds["val"], ["label"])["label"] == g, p.evaluate.target_escape_rate)
            at = rates_at(lot_proba[:, g], lot_labels == g, chosen["threshold"])
            row["lot_operating_point"] = {"threshold": chosen["threshold"], "false_reject": [at["false_reject"]["k"], at["false_reject"]["n"]],
                                          "escapes": [at["escape"]["k"], at["escape"]["n"]]}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


def table(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault(r["name"], []).append(r)
    out = ["| lever | seeds | test accuracy per seed | mean ± half-range | defect macro-F1 (lowest) | good-class recall (mean) "
           "| one class predicted | s per run |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        acc = [r["accuracy"] for r in rs]
        counted = [r for r in rs if r.get("pred_counts")]  # the first probes did not record them
        one = f"{sum(1 for r in counted if sum(1 for c in r['pred_counts'] if c) <= 1)} of {len(counted)}" if counted else "n/a"
        out.append(f"| {name} | {len(rs)} | {', '.join(f'{a:.3f}' for a in acc)} | {np.mean(acc):.3f} ± {(max(acc) - min(acc)) / 2:.3f} "
                   f"| {min(r['macro_f1_defects'] for r in rs):.3f} | {np.mean([r['recall_good'] for r in rs]):.2f} | {one} "
                   f"| {np.mean([r['wall'] for r in rs]):.0f} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="train and score, appending JSON lines to --out")
    r.add_argument("--project", default=".", help="a project with data/nsoartc (dvc repro nsoartc)")
    r.add_argument("--name", required=True, help="the row's name in the table")
    r.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="a params override (repeatable)")
    r.add_argument("--out", default="levers.jsonl")
    t = sub.add_parser("table", help="the markdown table of a results file")
    t.add_argument("results")
    args = ap.parse_args(argv)
    if args.action == "run":
        run(args)
    else:
        print(table(args.results))


if __name__ == "__main__":
    main()

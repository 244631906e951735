"""`make bench`: figures for each stage at the default params, each beside its reference, in one run.

- prepare: parts/s.
- nsoartc: parts/s, beside the time to merely read and write the same data set (its I/O floor).
- train: images/s of the Trainer streaming batches from the Arrow file (the stage) beside the Trainer fed
  tensors decoded up front and a bare PyTorch loop (target >= 0.9x), one epoch each, alternating, median and
  min; the achieved FLOP/s over an fp32 matmul timed in the same process, alternating with them.
- pretrain: the MAE pretraining's images/s beside the fine-tuning loop's (both the HF Trainer, one epoch
  over the same training composites), alternating repeats, median and min of each.
- attention: seconds for the whole stage's maps and scores at the defaults.
- inspect: ms per part, views (PNG files) in to verdict out, batch 1 and a lot of 64, torch and ONNX engines,
  beside the network's forward alone; and process start -> first verdict (`python -m vitinspect inspect`).
  Paired: the engines alternate within each repeat; median and min of the repeats.


`python benchmarks/run.py --only inspect --bundle models/bundle` times inspection alone on a built bundle;
`--only pretrain` the pretraining pair alone.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import load_stage  # noqa: E402
from vitinspect.data.arrow import SPLITS, columns, label_names, nsoartc_features, parts_features, to_dataset_dict  # noqa: E402
from vitinspect.model.prediction import to_pixel_values  # noqa: E402
from vitinspect.model.vit import InputSpec, build_scratch  # noqa: E402
from vitinspect.config.params import Params, load_params  # noqa: E402
from vitinspect.data.synthetic import generate  # noqa: E402
from vitinspect.core.storage import load_dataset_dir, save_dataset  # noqa: E402
from vitinspect.model.training import PixelDataset, make_trainer  # noqa: E402


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def row(name, value, unit, reference="", ref_value=None):
    ratio = f"  ({value / ref_value:.2f}x)" if ref_value else ""
    ref = f"  | {reference}: {ref_value:,.1f} {unit}" if ref_value is not None else ""
    print(f"{name:<44} {value:>12,.1f} {unit}{ref}{ratio}")


def bench_data(params: Params, work: Path):
    p = params.data
    cols, t_render = timed(generate, p)
    ds = to_dataset_dict(cols, parts_features(p.classes, p.views, p.image_size), p.classes)
    _, t_save = timed(save_dataset, ds, work / "parts", views=list(p.views), classes=list(p.classes))
    row("prepare: parts/s (render only)", p.n_images / t_render, "parts/s")
    row("prepare: parts/s (render + save)", p.n_images / (t_render + t_save), "parts/s")

    # nsoartc, whole stage, against reading and writing the same data set.
    pfile = work / "params.yaml"
    if not pfile.exists():
        pfile.write_text((ROOT / "params.yaml").read_text())
    stage = load_stage("nsoartc")
    _, t_stage = timed(stage.main, ["--params", str(pfile), "--parts", str(work / "parts"), "--out", str(work / "nsoartc"),
                                    "--unit-space", str(work / "u.npz"), "--metrics", str(work / "d.json"), "--figure", str(work / "n.png")])

    def io_floor():
        parts = load_dataset_dir(work / "parts")
        merged = {}
        for s in SPLITS:
            c = columns(parts[s], ["id", "label", "defect_terminal", "tilt", "retraction", "bbox", "mask", "views"])
            c["raw"] = c["views"][:, 0]
            c["nsoartc"] = np.repeat(c["views"][:, 0, :, :, None], 3, axis=-1)
            c["split"] = np.array([s] * len(c["id"]))
            for k, v in c.items():
                merged.setdefault(k, []).append(v)
        merged = {k: np.concatenate(v) for k, v in merged.items()}
        merged["id"] = list(merged["id"])
        out = to_dataset_dict(merged, nsoartc_features(label_names(parts["train"]), p.image_size), label_names(parts["train"]))
        save_dataset(out, work / "floor")

    _, t_floor = timed(io_floor)
    row("nsoartc: parts/s (whole stage)", p.n_images / t_stage, "parts/s", "read+write only", p.n_images / t_floor)
    return work / "nsoartc"


def matmul_flops(n=1024, reps=20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def train_flops_per_image(model, size) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=x).logits.sum().backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench_train(params: Params, data_dir: Path, work: Path, repeats: int = 5):
    """One epoch each, alternating (A B C D A B C D ...), median and min: a bare PyTorch loop, the Trainer
    fed tensors decoded up front (the all-in-RAM path), the Trainer fed batches streamed from the memory-
    mapped Arrow file (what the train stage does), and a 1024^3 fp32 matmul in the same process."""
    import functools

    from vitinspect.data.arrow import MappedImages
    from vitinspect.model.training import ImageDataset

    t = dataclasses.replace(params.train, epochs=1, device="cpu")
    ds = load_dataset_dir(data_dir)
    classes = label_names(ds["train"])
    cols = columns(ds["train"], ["nsoartc", "label"])
    val = columns(ds["val"], ["nsoartc", "label"])
    size = cols["nsoartc"].shape[1]
    spec = InputSpec(size)
    x, y = to_pixel_values(cols["nsoartc"], spec), torch.as_tensor(cols["label"].astype(np.int64))
    n = len(y)

    # Bare loop: same model, batch, AdamW, shuffling; no evaluation, logging or checkpoint.
    model = build_scratch(params.model, size, classes, t.seed).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    gen = torch.Generator().manual_seed(0)

    def bare():
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, t.batch_size):
            idx = order[i:i + t.batch_size]
            loss = model(pixel_values=x[idx], labels=y[idx]).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def trainer_for(train_ds, val_ds, name):
        tr = make_trainer(build_scratch(params.model, size, classes, t.seed), train_ds, val_ds, classes, t, work / f"ckpt_{name}")
        tr.args.eval_strategy = "no"
        tr.args.save_strategy = "no"
        return tr

    convert = functools.partial(to_pixel_values, spec=spec)

    def ram_trainer():  # the former stage: both splits decoded to float tensors first (set-up timed too)
        train_c, val_c = columns(ds["train"], ["nsoartc", "label"]), columns(ds["val"], ["nsoartc", "label"])
        return trainer_for(PixelDataset(convert(train_c["nsoartc"]), train_c["label"]),
                           PixelDataset(convert(val_c["nsoartc"]), val_c["label"]), "ram")

    def stream_trainer():  # what the stage builds: nothing decoded up front, so its set-up is inside the timing
        return trainer_for(ImageDataset(MappedImages(ds["train"], "nsoartc"), cols["label"], convert),
                           ImageDataset(MappedImages(ds["val"], "nsoartc"), val["label"], convert), "stream")

    peak = []

    def matmul():
        peak.append(matmul_flops())

    fns = {"bare": bare, "ram": lambda: ram_trainer().train(), "stream": lambda: stream_trainer().train(), "matmul": matmul}
    for fn in fns.values():  # warm-up
        fn()
    peak.clear()
    res = _paired(fns, repeats)
    ips = {k: (n / res[k][0], n / res[k][1]) for k in ("bare", "ram", "stream")}
    labels = {"bare": "bare PyTorch loop", "ram": "HF Trainer, decoded in RAM", "stream": "HF Trainer, streamed (stage)"}
    for k, (med, best) in ips.items():
        print(f"{'train: img/s, ' + labels[k]:<44} {med:>12,.1f} img/s median, {best:,.1f} max  "
              f"({med / ips['bare'][0]:.2f}x bare, {med / ips['ram'][0]:.2f}x RAM; median of {repeats}, alternating)")
    flops = train_flops_per_image(build_scratch(params.model, size, classes, 0), size)
    mm = float(np.median(peak))
    achieved = flops * ips["stream"][0]
    print(f"{'train: achieved FLOP/s (fwd+bwd, streamed)':<44} {achieved / 1e9:>12,.2f} GFLOP/s  | fp32 matmul 1024^3 in the same "
          f"process, alternating: {mm / 1e9:,.1f} GFLOP/s median, {max(peak) / 1e9:,.1f} max  ({100 * achieved / mm:.1f}% of the median)")
    print(f"{'':<44} {flops / 1e6:>12,.2f} MFLOP per image (fwd+bwd, {sum(p.numel() for p in model.parameters()):,} params)")


def bench_pretrain(params: Params, data_dir: Path, work: Path, repeats: int = 3):
    """Pretraining (ViTMAE, pretrain.* and model.*) and fine-tuning (train.*), paired: A B A B ..."""
    from vitinspect.model.pretraining import UnlabeledImages, build_mae, mae_config, make_mae_trainer

    ds = load_dataset_dir(data_dir)
    classes = label_names(ds["train"])
    cols = columns(ds["train"], ["nsoartc", "label"])
    size = cols["nsoartc"].shape[1]
    spec = InputSpec(size)
    pixels = to_pixel_values(cols["nsoartc"], spec)
    q = dataclasses.replace(params.pretrain, epochs=1, device="cpu")
    t = dataclasses.replace(params.train, epochs=1, device="cpu")

    def pretrain_once():
        trainer = make_mae_trainer(build_mae(mae_config(params.model, size, q), q.seed), UnlabeledImages(cols["nsoartc"]), spec, q, work / "pt")
        return trainer.train().metrics["train_samples_per_second"]

    def finetune_once():
        trainer = make_trainer(build_scratch(params.model, size, classes, t.seed), PixelDataset(pixels, cols["label"]),
                               PixelDataset(pixels[:64], cols["label"][:64]), classes, t, work / "ft")
        trainer.args.eval_strategy = "no"
        trainer.args.save_strategy = "no"
        return trainer.train().metrics["train_samples_per_second"]

    pretrain_once(), finetune_once()  # warm-up
    pt, ft = [], []
    for _ in range(repeats):
        pt.append(pretrain_once())
        ft.append(finetune_once())
    print(f"{'pretrain: images/s, MAE (Trainer, 1 epoch)':<44} {np.median(pt):>12,.1f} img/s (min {min(pt):,.1f})  | "
          f"fine-tuning (Trainer, 1 epoch): {np.median(ft):,.1f} img/s (min {min(ft):,.1f})  "
          f"({np.median(pt) / np.median(ft):.2f}x; {repeats} alternating repeats, mask ratio {q.mask_ratio})")


def train_model(work: Path, data_dir: Path):
    train = load_stage("train")
    train.main(["--params", str(work / "params.yaml"), "--data", str(data_dir), "--out", str(work / "vit"), "--init", str(work / "vit_init"),
                "--checkpoints", str(work / "ck"), "--live", str(work / "live"), "--metrics", str(work / "train.json"),
                "--run-info", str(work / "train_run.json")])


def bench_attention(data_dir: Path, work: Path):
    pfile = work / "params.yaml"
    train_model(work, data_dir)
    stage = load_stage("attention")
    _, t_att = timed(stage.main, ["--params", str(pfile), "--data", str(data_dir), "--model", str(work / "vit"),
                                  "--metrics", str(work / "att.json"), "--report", str(work / "att_report.json"), "--figures", str(work / "att")])
    print(f"{'attention: whole stage at the defaults':<44} {t_att:>12,.1f} s")


def bench_refusal(work: Path, repeats: int = 5):
    bad = work / "bad_params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("passed_ratio: 0.02", "passed_ratio: 0"))
    cmds = {
        "validate": [sys.executable, str(ROOT / "stages/validate.py"), "--params", str(bad), "--out", "ok.json"],
        "prepare": [sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(bad), "--out", "parts_x", "--gallery", "g.png"],
    }
    times = {k: [] for k in cmds}
    for _ in range(repeats):  # alternating, so load on the machine hits both alike
        for name, cmd in cmds.items():
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
            times[name].append(time.perf_counter() - t)
            assert proc.returncode == 2, proc.stderr
    for name, ts in times.items():
        print(f"{'refusal of a bad params.yaml: ' + name:<44} {np.median(ts):>12,.2f} s median, {min(ts):.2f} s min")


def bench_peer(params: Params, work: Path, parts: int = 40, repeats: int = 5):
    """Per-part predict latency, SVM vs ViT, from the raw views of one part to class probabilities."""
    import json

    from vitinspect.composite.nsoartc import UnitSpace, double_eye, to_image
    from vitinspect.evaluation.rt_peer import CellUnitSpace, cell_boxes, cell_features, load_peer
    from vitinspect.evaluation.rt_peer import predict_proba as peer_proba

    pfile = work / "params.yaml"
    stage = load_stage("baseline")
    _, t_stage = timed(stage.main, ["--params", str(pfile), "--parts", str(work / "parts"), "--model", "peer", "--metrics", "b.json",
                                    "--confusion-records", "br.json", "--figure", "b.png", "--report", "breport.json",
                                    "--run-info", "brun.json"])
    report = json.loads((work / "breport.json").read_text())
    svm = load_peer(work / "peer" / "svm.joblib", report["models"]["svm"]["sha256"])
    ds = load_dataset_dir(work / "parts")
    classes = label_names(ds["train"])
    views_of = params.data.views
    test = columns(ds["test"], ["views"])["views"][:parts].astype(np.float64) / 255.0
    train = columns(ds["train"], ["views", "label"])
    size = test.shape[-1]
    boxes = cell_boxes(size, params.data.grid.rows, params.data.grid.cols)
    eps, n = params.nsoartc.eps, params.nsoartc
    # Both unit spaces from the passed training parts, as the stages build them (not timed).
    passed = train["views"][train["label"] == classes.index("passed")].astype(np.float64) / 255.0
    as_views = lambda v: {name: v[:, j] for j, name in enumerate(views_of)}  # noqa: E731
    cells = CellUnitSpace.fit(cell_features(as_views(passed), boxes, eps))
    pixels = UnitSpace.fit(double_eye(as_views(passed), n.window, eps))
    vit = build_scratch(params.model, size, classes, 0).eval()  # untrained: the same arithmetic as a trained one
    spec = InputSpec(size)

    def svm_one(v):
        return peer_proba(svm, cells.zscore(cell_features(as_views(v), boxes, eps), eps))

    @torch.no_grad()
    def vit_one(v):
        z = pixels.zscore(double_eye(as_views(v), n.window, eps), eps)
        return torch.softmax(vit(pixel_values=to_pixel_values(to_image(z, n.gain), spec)).logits, -1).numpy()

    svm_one(test[:1]), vit_one(test[:1])  # warm-up
    times = {"svm": [], "vit": []}
    for _ in range(repeats):  # alternating, so a busy neighbour slows both alike
        for name, fn in (("svm", svm_one), ("vit", vit_one)):
            start = time.perf_counter()
            for i in range(len(test)):
                fn(test[i:i + 1])
            times[name].append(1000 * (time.perf_counter() - start) / len(test))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{'baseline: predict ms/part, RT cells + SVM':<44} {med['svm']:>12,.2f} ms  (min {min(times['svm']):.2f})"
          f"  | ViT, NSOARTC + forward: {med['vit']:,.2f} ms (min {min(times['vit']):.2f})  ({med['vit'] / med['svm']:.1f}x the SVM)")
    print(f"{'baseline: whole stage (features, grid, fit)':<44} {t_stage:>12,.1f} s   | SVM grid fits {json.loads((work / 'brun.json').read_text())['svm']['fit_seconds_all_grid']:.1f} s, "
          f"chosen {report['svm']['chosen']}; test accuracy {report['svm']['test']['accuracy']:.3f}")


def bench_evaluate(params: Params, data_dir: Path, work: Path, repeats: int = 3):
    """evaluate's whole main() against predict_proba over the images it predicts (val, test, lot), alternating."""
    from vitinspect.model.prediction import predict_proba
    from vitinspect.model.vit import load_trained

    pfile = work / "params.yaml"
    _, t_lot = timed(load_stage("lot").main, ["--params", str(pfile), "--unit-space", str(work / "u.npz"), "--out", str(work / "lot")])
    row(f"lot: parts/s (render + composite, {params.lot.n_parts} parts)", params.lot.n_parts / t_lot, "parts/s")
    ds, lot = load_dataset_dir(data_dir), load_dataset_dir(work / "lot", splits=("lot",))["lot"]
    images = np.concatenate([columns(ds["val"], ["nsoartc"])["nsoartc"], columns(ds["test"], ["nsoartc"])["nsoartc"],
                             columns(lot, ["nsoartc"])["nsoartc"]])
    model = load_trained(work / "vit")
    pixels = to_pixel_values(images, InputSpec(images.shape[1]))
    stage = load_stage("evaluate")
    args = ["--params", str(pfile), "--data", str(data_dir), "--lot", str(work / "lot"), "--model", str(work / "vit")]
    for name in ("operating-point", "metrics", "lot-metrics", "report", "confusion-matrix", "confusion-records", "roc", "pr"):
        args += [f"--{name}", str(work / "ev" / f"{name}.json")]
    args += ["--predictions", str(work / "ev" / "p.csv"), "--figure", str(work / "ev" / "c.png")]
    stage.main(args)  # warm-up (imports, first figure)
    predict_proba(model, pixels, params.evaluate.batch_size)
    t_stage, t_fwd = [], []
    for _ in range(repeats):  # paired: the two alternate, so drifting load hits both alike
        t_stage.append(timed(stage.main, args)[1])
        t_fwd.append(timed(predict_proba, model, pixels, params.evaluate.batch_size)[1])
    med_s, med_f = float(np.median(t_stage)), float(np.median(t_fwd))
    print(f"{'evaluate: whole stage (in-process main)':<44} {med_s:>12,.2f} s median, {min(t_stage):,.2f} s min  "
          f"| forward pass over the same {len(images):,} images: {med_f:,.2f} s median, {min(t_fwd):,.2f} s min  "
          f"({med_s / med_f:.2f}x median, {min(t_stage) / min(t_fwd):.2f}x min; target <= 1.5x)")


def _cpu_seconds() -> float:
    """CPU time (user + sys) of this process and its finished children: unlike wall time, not inflated by a busy machine."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _paired(fns: dict, repeats: int) -> dict[str, tuple[float, float, float]]:
    """name -> (median, min wall seconds, median CPU seconds); the functions alternate within each repeat."""
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c = _cpu_seconds()
            times[k].append(timed(fn)[1])
            cpu[k].append(_cpu_seconds() - c)
    return {k: (float(np.median(v)), float(np.min(v)), float(np.median(cpu[k]))) for k, v in times.items()}


def bench_inspect(bundle_dir: Path, work: Path, repeats: int = 7):
    import subprocess

    from vitinspect.deploy import bundle as bundle_format
    from vitinspect.__main__ import main as cli_main
    from vitinspect.app.results import judge_folders
    from vitinspect.deploy.engine import OnnxEngine, TorchEngine, composite

    b = bundle_format.load(bundle_dir)
    lot = work / "bench_lot"
    cli_main(["render", "--n", "64", "--out", str(lot), "--bundle", str(bundle_dir)])
    folders = sorted(d for d in lot.iterdir() if d.is_dir())
    from vitinspect.app.lot_reader import read_part

    views = np.stack([read_part(f, b.views, b.image_size)[0] for f in folders])
    images, _ = composite(b, views)
    engines = {"torch": TorchEngine(b), "onnx": OnnxEngine(b)}
    for e in engines.values():  # warm-up
        judge_folders(b, e, folders[:2], progress=False)
    for n in (1, 64):
        fns = {}
        for name, e in engines.items():
            fns[f"{name} end-to-end"] = lambda e=e: judge_folders(b, e, folders[:n], progress=False)
            fns[f"{name} forward"] = lambda e=e: e(images[:n])
        res = _paired(fns, repeats)
        for name in engines:
            (med, mn, cpu), (fmed, fmn, fcpu) = res[f"{name} end-to-end"], res[f"{name} forward"]
            print(f"{f'inspect: {name}, batch {n}, ms/part':<44} {1e3 * med / n:>12,.2f} ms (min {1e3 * mn / n:.2f}, CPU {1e3 * cpu / n:.2f})"
                  f"  | forward alone: {1e3 * fmed / n:,.2f} ms (min {1e3 * fmn / n:.2f}, CPU {1e3 * fcpu / n:.2f})  ({med / fmed:.1f}x)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = {e: [sys.executable, "-m", "vitinspect", "inspect", str(folders[0]), "--bundle", str(bundle_dir), "--engine", e]
           for e in engines}
    starts = _paired({e: (lambda c=c: subprocess.run(c, env=env, capture_output=True, check=True)) for e, c in cmd.items()}, 5)
    for e, (med, mn, cpu) in starts.items():
        print(f"{f'inspect: process start -> first verdict, {e}':<44} {med:>12,.2f} s (min {mn:.2f}, CPU {cpu:.2f} s)")


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("all", "inspect", "peer", "evaluate", "train", "pretrain"), default="all")
    ap.add_argument("--bundle", type=Path, help="with --only inspect: a built bundle (default: models/bundle)")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"), help="params file (e.g. fewer parts for a quick look)")
    args = ap.parse_args()
    params_file = Path(args.params).resolve()
    params = load_params(params_file)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; params from {params_file}\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only == "inspect":
            bench_inspect((args.bundle or ROOT / "models/bundle").resolve(), work)
            return
        os.chdir(work)  # stage outputs must lie inside the working directory
        if args.only == "peer":
            (work / "params.yaml").write_text(params_file.read_text())
            save_dataset(to_dataset_dict(generate(params.data), parts_features(params.data.classes, params.data.views,
                                                                               params.data.image_size), params.data.classes), work / "parts")
            bench_peer(params, work)
            return
        (work / "params.yaml").write_text(params_file.read_text())
        if args.only != "pretrain":
            bench_refusal(work)
        data_dir = bench_data(params, work)
        if args.only == "evaluate":
            text = (ROOT / "params.yaml").read_text().replace(f"epochs: {params.train.epochs}", "epochs: 1")
            (work / "params.yaml").write_text(text)
            train_model(work, data_dir)
            bench_evaluate(params, data_dir, work)
            return
        if args.only == "pretrain":
            bench_pretrain(params, data_dir, work)
            return
        bench_train(params, data_dir, work)
        if args.only == "train":
            return
        bench_pretrain(params, data_dir, work)
        bench_attention(data_dir, work)
        bench_peer(params, work)
        bench_evaluate(params, data_dir, work)
        load_stage("bundle").main(["--params", str(work / "params.yaml"), "--parts", str(work / "parts"), "--unit-space", str(work / "u.npz"),
                                   "--model", str(work / "vit"), "--out", str(work / "bundle"), "--metrics", str(work / "ood.json"),
                                   "--report", str(work / "ood_report.json")])
        bench_inspect(work / "bundle", work)


if __name__ == "__main__":
    main()

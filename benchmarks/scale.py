"""`make bench-scale`: prepare -> nsoartc -> train (1 epoch) -> evaluate (after lot) at growing numbers of parts, per stage:
wall, parts/s, peak RSS, CPU utilisation and bytes on disk, plus the fitted growth per 1,000 parts.

Each stage runs as its own process (as DVC runs it). Peak RSS is sampled from /proc every 50 ms over the
stage's whole process tree (proportional set size of the stage and its worker processes, summed), beside the largest single
process's high-water mark (VmHWM); both count the pages of memory-mapped Arrow files the stage touched
(reclaimable page cache, not heap), so they are upper bounds on what the stage needs; the anonymous
part (Pss_Anon: heap and arrays, summed over the tree) is printed beside them. CPU utilisation is
(user + system CPU seconds of the tree) / wall seconds: 1.0 = one core busy.

    python benchmarks/scale.py                                  # 1k/3k/10k/30k at 64 px, 1k/3k at 224 px (patch 16)
    python benchmarks/scale.py --sizes 1000,3000 --sizes-224 '' # a subset
    python benchmarks/scale.py --num-proc 1,2                   # prepare and nsoartc at each; output bytes compared
    python benchmarks/scale.py --sizes 10000 --sizes-224 '' --num-proc 1,2 --paired 3   # speed-up, alternating rounds
    python benchmarks/scale.py --sizes '' --sizes-224 '' --folders 10000      # only the folders row (224 px)
    python benchmarks/scale.py --sizes '' --sizes-224 '' --folders '' --blender 200   # only the Blender row (64 px)

The folders row (`--folders N`, default 10,000 parts at 224 px): `vitinspect render` writes N parts as image
folders (not timed), then prepare reads them with data.source folders, beside prepare rendering the same
parts with data.source render, in one run; the Arrow files of both are compared.

The Blender row (`--blender N`, default 200 parts at 64 px): prepare with data.renderer blender beside the 2-D
renderer, milliseconds per part (docs/blender.md); skipped without bpy (`make bench-scale BLENDER=1`).

Kept out of `make test`: minutes to hours, and the figures are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vitinspect.config.params import defaults_dict  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(pid: int) -> list[int]:
    """pid and every descendant, from /proc (children files where the kernel has them, else a scan)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return out


def _rss(pid: int) -> int:
    """Proportional set size (shared pages split between the processes that share them, so forked workers
    are not counted twice); RSS where the kernel has no smaps_rollup."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _anon(pid: int) -> int:
    """Anonymous memory (heap, arrays), proportional (Pss_Anon: pages a forked worker still shares with its
    parent count half in each): what the stage needs, without mapped-file pages. RssAnon on older kernels."""
    for key, f in (("Pss_Anon:", "smaps_rollup"), ("RssAnon:", "status")):
        try:
            for line in Path(f"/proc/{pid}/{f}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
    return 0


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemoryCap:
    """A memory cgroup (v2, or v1's memory controller) holding one stage's processes: ``limit`` bytes
    charged for heap *and* page cache, so the kernel must reclaim the mapped Arrow pages a stage has read
    to stay under it, and kills the stage (out of memory) where its heap alone does not fit. Needs root:
    it also empties the machine's page cache before the stage starts."""

    def __init__(self, limit: int):
        self.limit, name = limit, f"vitinspect-bench-{os.getpid()}-{time.monotonic_ns()}"
        v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
        if (v2 / "cgroup.controllers").exists() and "memory" in (v2 / "cgroup.controllers").read_text():
            self.dir, self.files = v2 / name, ("memory.max", "memory.peak")
        else:
            self.dir, self.files = v1 / name, ("memory.limit_in_bytes", "memory.max_usage_in_bytes")
        self.dir.mkdir()
        (self.dir / self.files[0]).write_text(str(limit))
        # Empty the page cache first, so the stage's reads of earlier stages' files are charged to its cgroup
        # (a page is charged to the group that first reads it) and count against the cap.
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")

    def join(self) -> None:  # in the child, before exec
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def peak(self) -> int:
        try:
            return int((self.dir / self.files[1]).read_text())
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        try:
            self.dir.rmdir()
        except OSError:
            pass


def run_stage(cmd: list[str], cwd: Path, cap: int | None = None) -> dict:
    """Run one stage; wall, CPU seconds, peak tree RSS and largest VmHWM. ``cap``: bytes of memory (heap
    and page cache) the stage may hold (MemoryCap); the cgroup's peak charge is added to the row."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    group = MemoryCap(cap) if cap else None
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=group.join if group else None)
    except BaseException:
        if group:
            group.close()
        raise
    peak, anon, hwm, stop = [0], [0], [0], threading.Event()

    def sample():
        while not stop.is_set():
            pids = _tree(proc.pid)
            peak[0] = max(peak[0], sum(_rss(p) for p in pids))
            anon[0] = max(anon[0], sum(_anon(p) for p in pids))
            hwm[0] = max([hwm[0], *(_hwm(p) for p in pids)])
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    t.join()
    out = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    charged = group.peak() if group else None
    if group:
        group.close()
    if proc.returncode != 0:
        why = f" (the {cap / 2**20:.0f} MiB cap: killed out of memory)" if group and proc.returncode == -9 else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}){why}:\n{out[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "cpu_util": cpu / wall, "peak_rss": peak[0], "peak_anon": anon[0],
            "max_hwm": max(hwm[0], usage.ru_maxrss * 1024), "cap": cap, "cap_peak": charged, "log": out.strip().splitlines()[-1:]}


def du(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def write_params(work: Path, n: int, size: int, patch: int, num_proc) -> Path:
    p = defaults_dict()
    p["data"].update(n_images=n, image_size=size, num_proc=num_proc)
    p["model"]["patch_size"] = patch
    p["train"]["epochs"] = 1
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def data_stages(params: Path) -> dict:
    """prepare's and nsoartc's commands, run in the folder that holds ``params``."""
    py, st = sys.executable, ROOT / "stages"
    return {
        "prepare": [py, str(st / "prepare.py"), "--params", str(params), "--out", "data/parts", "--gallery", "samples.png"],
        "nsoartc": [py, str(st / "nsoartc.py"), "--params", str(params), "--parts", "data/parts", "--out", "data/nsoartc",
                    "--unit-space", "data/unit.npz", "--metrics", "data.json", "--figure", "nsoartc.png"],
    }


def paired_speedup(n: int, size: int, patch: int, num_procs: list, work: Path, repeats: int) -> None:
    """prepare, then nsoartc, at each num_proc in turn, ``repeats`` rounds, the order reversed every other
    round (A B, B A, ...) so a drift in the machine's load does not favour one; per stage the wall of each
    round and the ratio fewest / most processes, its median and min, and whether the bytes are equal."""
    walls = {stage: {k: [] for k in num_procs} for stage in ("prepare", "nsoartc")}
    dirs = {k: work / f"{n}_{size}_paired_np{k}" for k in num_procs}
    for r in range(repeats):
        order = num_procs if r % 2 == 0 else num_procs[::-1]
        for stage in walls:
            for k in order:
                dirs[k].mkdir(parents=True, exist_ok=True)
                cmd = data_stages(write_params(dirs[k], n, size, patch, k))[stage]
                walls[stage][k].append(run_stage(cmd, dirs[k])["wall_s"])
    lo, hi = min(num_procs), max(num_procs)
    print(f"\nnum_proc {lo} against {hi}, {n:,} parts at {size} px, {repeats} alternating rounds (wall s):")
    for stage, w in walls.items():
        ratios = np.array(w[lo]) / np.array(w[hi])
        print(f"  {stage:<8} np={lo}: {', '.join(f'{x:.1f}' for x in w[lo])}   np={hi}: {', '.join(f'{x:.1f}' for x in w[hi])}"
              f"   speed-up {', '.join(f'{x:.2f}' for x in ratios)}: median {np.median(ratios):.2f}x, min {ratios.min():.2f}x")
    same = len({(digest(d / "data/parts"), digest(d / "data/nsoartc")) for d in dirs.values()}) == 1
    print(f"  output bytes of prepare and nsoartc {'EQUAL' if same else 'DIFFER'} across num_proc {num_procs}", flush=True)


def one_size(n: int, size: int, patch: int, num_procs: list, work: Path, train: bool, caps: dict | None = None) -> list[dict]:
    py, st = sys.executable, ROOT / "stages"
    rows, digests = [], {}
    for k in num_procs:
        d = work / f"{n}_{size}_np{k}"
        d.mkdir(parents=True, exist_ok=True)
        params = write_params(d, n, size, patch, k)
        stages = data_stages(params)
        outs = {"prepare": [d / "data/parts"], "nsoartc": [d / "data/nsoartc"]}
        if train and k == num_procs[-1]:
            stages["train"] = [py, str(st / "train.py"), "--params", str(params), "--data", "data/nsoartc", "--out", "vit", "--init", "vit_init",
                               "--checkpoints", "ck", "--live", "live", "--metrics", "train.json", "--run-info", "run.json"]
            outs["train"] = [d / "vit", d / "vit_init"]
            # evaluate reads the val and test splits (and the lot, made at lot.n_parts whatever the data size)
            stages["lot"] = [py, str(st / "lot.py"), "--params", str(params), "--unit-space", "data/unit.npz", "--out", "data/lot"]
            outs["lot"] = [d / "data/lot"]
            stages["evaluate"] = [py, str(st / "evaluate.py"), "--params", str(params), "--data", "data/nsoartc", "--lot", "data/lot",
                                  "--model", "vit", "--operating-point", "op.json", "--metrics", "eval.json", "--lot-metrics", "lotm.json",
                                  "--report", "evaluation.json", "--confusion-matrix", "cm.json", "--confusion-records", "cr.json",
                                  "--predictions", "pred.csv", "--figure", "cm.png", "--roc", "roc.json", "--pr", "pr.json",
                                  "--lot-summary", "lot.json"]
            outs["evaluate"] = [d / "pred.csv", d / "evaluation.json"]
        for name, cmd in stages.items():
            r = run_stage(cmd, d, (caps or {}).get(name))
            r.update(stage=name, n=n, size=size, num_proc=k, parts_per_s=n / r["wall_s"], disk=du(*outs[name]))
            if name == "train":
                info = json.loads((d / "run.json").read_text())
                r["training_s"] = info["wall_seconds"]
                r["overhead_pct"] = 100 * (1 - info["wall_seconds"] / r["wall_s"])
                r["images_per_s"] = info["images_per_second"]
                r["threads"] = info.get("threads")
            rows.append(r)
            print(_line(r), flush=True)
        digests[k] = (digest(d / "data/parts"), digest(d / "data/nsoartc"))
    if len(digests) > 1:
        same = len(set(digests.values())) == 1
        print(f"  output bytes of prepare and nsoartc {'EQUAL' if same else 'DIFFER'} across num_proc {num_procs}: {digests}", flush=True)
        for r in rows:
            r["bytes_equal_across_num_proc"] = same
    return rows


def folders_rows(n: int, size: int, patch: int, work: Path, num_proc, caps: dict | None = None) -> list[dict]:
    """prepare on the renderer and on the same parts as image folders (data.source folders), side by side."""
    d = work / f"folders_{n}_{size}"
    rows = []
    for source in ("render", "folders"):
        run_dir = d / source
        run_dir.mkdir(parents=True, exist_ok=True)
        params = write_params(run_dir, n, size, patch, num_proc)
        if source == "folders":
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vitinspect", "render", "--n", str(n), "--seed", "0", "--params", str(params),
                            "--out", str(d / "images")], check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
            print(f"  (vitinspect render wrote {n:,} parts as PNG folders in {time.perf_counter() - start:.0f} s, "
                  f"{du(d / 'images') / 2**20:.0f} MiB)", flush=True)
            p = yaml.safe_load(params.read_text())
            p["data"].update(source="folders", folders={"path": str(d / "images"), "layout": "auto", "on_bad_part": "error"})
            params.write_text(yaml.safe_dump(p, sort_keys=False))
        r = run_stage(data_stages(params)["prepare"], run_dir, (caps or {}).get("prepare"))
        r.update(stage=f"prep-{source[:4]}", n=n, size=size, num_proc=num_proc, parts_per_s=n / r["wall_s"], disk=du(run_dir / "data/parts"))
        rows.append(r)
        print(_line(r), flush=True)
    arrow = [{f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted((d / s / "data/parts").rglob("*.arrow"))}
             for s in ("render", "folders")]
    print(f"  Arrow files of the two prepares {'EQUAL' if arrow[0] == arrow[1] else 'DIFFER'}", flush=True)
    return rows


def blender_rows(n: int, size: int, work: Path, num_proc, samples: int | None = None) -> list[dict]:
    """prepare with data.renderer blender (Cycles, data.blender's defaults unless ``samples``) beside the 2-D
    renderer on the same parts: seconds per part. Skipped, with a line, where bpy is not installed."""
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        print("  (blender row skipped: no bpy here; make bench-scale BLENDER=1 installs it)", flush=True)
        return []
    rows = []
    for renderer in ("2d", "blender"):
        run_dir = work / f"blender_{n}_{size}" / renderer
        run_dir.mkdir(parents=True, exist_ok=True)
        params = write_params(run_dir, n, size, 8, num_proc)
        p = yaml.safe_load(params.read_text())
        p["data"].update(renderer=renderer, passed_ratio=max(p["data"]["passed_ratio"], 0.1))  # a passed part per split at 200
        if samples:
            p["data"]["blender"]["samples"] = samples
        params.write_text(yaml.safe_dump(p, sort_keys=False))
        r = run_stage(data_stages(params)["prepare"], run_dir)
        r.update(stage=f"prep-{renderer}", n=n, size=size, num_proc=num_proc, parts_per_s=n / r["wall_s"], disk=du(run_dir / "data/parts"))
        rows.append(r)
        print(_line(r) + f"  {1000 * r['wall_s'] / n:.0f} ms/part"
              + (f" (Cycles, {p['data']['blender']['samples']} samples, {p['data']['blender']['threads']} thread per process, "
                 f"device {p['data']['blender']['device']})" if renderer == "blender" else ""), flush=True)
    return rows


def _line(r: dict) -> str:
    capped = f"  cap {r['cap'] / 2**20:.0f} MiB, peak charged {r['cap_peak'] / 2**20:.0f} MiB" if r.get("cap") else ""
    extra = capped + f"  training {r['training_s']:.1f} s, overhead {r['overhead_pct']:.0f} %, {r['images_per_s']:.0f} img/s, {r['threads']} threads" \
        if r["stage"] == "train" else capped
    return (f"{r['stage']:<8} {r['n']:>6} parts {r['size']:>3} px np={r['num_proc']}: {r['wall_s']:7.1f} s  {r['parts_per_s']:7.1f} parts/s  "
            f"peak PSS {r['peak_rss'] / 2**20:6.0f} MiB, anon {r['peak_anon'] / 2**20:5.0f} (largest process RSS {r['max_hwm'] / 2**20:.0f})  CPU {r['cpu_util']:.2f}  "
            f"disk {r['disk'] / 2**20:7.1f} MiB{extra}")


def fits(rows: list[dict]) -> None:
    print("\nfitted growth per 1,000 parts (least squares over the sizes run; num_proc as last listed):")
    keys = sorted({(r["stage"], r["size"], r["num_proc"]) for r in rows})
    for stage, size, k in keys:
        sel = sorted((r for r in rows if (r["stage"], r["size"], r["num_proc"]) == (stage, size, k)), key=lambda r: r["n"])
        if len(sel) < 2:
            continue
        n = np.array([r["n"] for r in sel], dtype=float) / 1000
        wall = np.polyfit(n, [r["wall_s"] for r in sel], 1)
        rss = np.polyfit(n, [r["peak_rss"] / 2**20 for r in sel], 1)
        anon = np.polyfit(n, [r["peak_anon"] / 2**20 for r in sel], 1)
        ratio = sel[-1]["peak_rss"] / sel[0]["peak_rss"]
        ratio_anon = sel[-1]["peak_anon"] / sel[0]["peak_anon"]
        print(f"  {stage:<8} {size:>3} px np={k}: {wall[0]:6.2f} s, {rss[0]:6.1f} MiB peak PSS, {anon[0]:6.1f} MiB anon per 1,000 parts "
              f"(peak at {sel[-1]['n']:,} / at {sel[0]['n']:,} parts: PSS {ratio:.2f}x, anon {ratio_anon:.2f}x)")
    speed = {}
    for r in rows:
        speed.setdefault((r["stage"], r["n"], r["size"]), {})[r["num_proc"]] = r["wall_s"]
    lines = [f"  {s:<8} {n:>6} parts {size:>3} px: " + ", ".join(f"np={k} {w:.1f} s" for k, w in sorted(v.items()))
             + f"  ({v[min(v)] / v[max(v)]:.2f}x)" for (s, n, size), v in sorted(speed.items()) if len(v) > 1]
    if lines:
        print("\nnum_proc speed-up (wall of the fewest / of the most processes):")
        print("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,3000,10000,30000", help="parts at 64 px (patch 8), comma-separated ('' for none)")
    ap.add_argument("--sizes-224", default="1000,3000", help="parts at 224 px (patch 16), comma-separated ('' for none)")
    ap.add_argument("--num-proc", default="auto", help="data.num_proc values for prepare and nsoartc, e.g. 1,2 (train runs after the last)")
    ap.add_argument("--no-train", action="store_true", help="prepare and nsoartc only (no train, lot, evaluate)")
    ap.add_argument("--work", type=Path, help="keep the outputs here (default: a temporary directory)")
    ap.add_argument("--json", type=Path, help="also write every row here")
    ap.add_argument("--paired", type=int, default=0, metavar="ROUNDS",
                    help="instead: prepare and nsoartc at each --num-proc in alternating rounds (A B, B A, ...) at each size; "
                         "per stage the speed-up's median and min")
    ap.add_argument("--cap-mib", default="", help="run each stage in a memory cgroup of this many MiB (heap and page cache "
                    "together; root only): one number for every stage, or stage=MiB,... e.g. prepare=390,nsoartc=830")
    ap.add_argument("--folders", default="10000", help="parts for the folders row at 224 px ('' for none)")
    ap.add_argument("--blender", default="200", help="parts for the Blender row at 64 px, data.renderer blender beside 2d "
                    "('' for none; skipped without bpy)")
    ap.add_argument("--blender-samples", type=int, default=None, help="data.blender.samples for the Blender row (default: params')")
    args = ap.parse_args(argv)
    caps = {}
    for item in filter(None, args.cap_mib.split(",")):
        stage, _, mib = item.rpartition("=")
        for name in ([stage] if stage else ["prepare", "nsoartc", "train", "lot", "evaluate"]):
            caps[name] = int(float(mib) * 2**20)
    num_procs = [k if k == "auto" else int(k) for k in args.num_proc.split(",")]
    plan = [(int(n), 64, 8) for n in args.sizes.split(",") if n] + [(int(n), 224, 16) for n in args.sizes_224.split(",") if n]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; num_proc {num_procs}\n", flush=True)
    if args.paired:
        if len(num_procs) < 2 or "auto" in num_procs:
            ap.error("--paired needs two or more numeric --num-proc values, e.g. --num-proc 1,2")
        with tempfile.TemporaryDirectory() as tmp:
            for n, size, patch in plan:
                paired_speedup(n, size, patch, num_procs, args.work or Path(tmp), args.paired)
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        rows = []
        for n, size, patch in plan:
            rows += one_size(n, size, patch, num_procs, work, not args.no_train, caps)
        for n in filter(None, args.folders.split(",")):
            rows += folders_rows(int(n), 224, 16, work, num_procs[-1], caps)
        for n in filter(None, args.blender.split(",")):
            rows += blender_rows(int(n), 64, work, num_procs[-1], args.blender_samples)
    fits(rows)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (this machine may be shared: a load above its cores slows every figure)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()

"""prepare, nsoartc and lot stream in chunks over data.num_proc processes: the bytes they save depend on neither."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from conftest import load_stage, write_params


def _data_stages(d: Path, **data) -> dict[str, bytes]:
    """Run prepare, nsoartc and lot in-process in ``d``; every file they wrote, path -> bytes."""
    params = write_params(d / "params.yaml", data=data)
    old = os.getcwd()
    os.chdir(d)
    try:
        load_stage("prepare").main(["--params", str(params), "--out", "parts", "--gallery", "samples.png"])
        load_stage("nsoartc").main(["--params", str(params), "--parts", "parts", "--out", "nsoartc", "--unit-space", "unit.npz",
                                    "--metrics", "data.json", "--figure", "nsoartc.png"])
        load_stage("lot").main(["--params", str(params), "--unit-space", "unit.npz", "--out", "lot"])
    finally:
        os.chdir(old)
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "params.yaml"}


def test_data_stage_bytes_do_not_depend_on_num_proc_and_match_the_in_memory_path(tmp_path, monkeypatch, tiny_params):
    from vitinspect.data import arrow as dataset
    from vitinspect.data.arrow import parts_features, to_dataset_dict
    from vitinspect.composite.nsoartc import UnitSpace, double_eye
    from vitinspect.data.synthetic import generate

    from vitinspect.composite import nsoartc_dataset

    monkeypatch.setattr(dataset, "chunk_size", lambda size: 16)  # several chunks per split, merged in order
    monkeypatch.setattr(nsoartc_dataset, "chunk_size", lambda size: 16)  # (bound where the nsoartc stage's passes run)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = _data_stages(tmp_path / "one", num_proc=1)
    two = _data_stages(tmp_path / "two", num_proc=2)
    assert sorted(one) == sorted(two) and not any(".chunks" in k for k in one)  # scratch chunks removed
    assert [k for k in one if one[k] != two[k]] == []
    assert sum(k.startswith("nsoartc/train/data-") for k in one) == 1
    assert "nsoartc.png" in one and "lot/lot/data-00000-of-00001.arrow" in one  # the figure drawn beside (np 2), the lot

    # The Arrow data as the in-memory path (every part rendered at once, Dataset.from_dict) writes it.
    p = tiny_params.data
    cols = generate(p)
    to_dataset_dict(cols, parts_features(p.classes, p.views, p.image_size), p.classes).save_to_disk(str(tmp_path / "mem"))
    arrows = sorted((tmp_path / "mem").rglob("*.arrow"))
    assert arrows and all((tmp_path / "mem" / a.relative_to(tmp_path / "mem")).read_bytes() == one[f"parts/{a.relative_to(tmp_path / 'mem')}"]
                          for a in arrows)
    # The unit space as fitted on the stacked passed training parts, to the bit.
    train = (np.asarray(cols["split"]) == "train") & (np.asarray(cols["label"]) == "passed")
    v = cols["views"][train].astype(np.float32) / 255.0
    fit = UnitSpace.fit(double_eye({n: v[:, j] for j, n in enumerate(p.views)}, tiny_params.nsoartc.window, tiny_params.nsoartc.eps))
    unit = np.load(tmp_path / "one" / "unit.npz")
    assert int(unit["n"]) == fit.n == train.sum()
    assert unit["mean"].tobytes() == fit.mean.tobytes() and unit["std"].tobytes() == fit.std.tobytes()


def test_mapped_images_are_the_stored_uint8_rows_and_batches_convert_like_the_whole_split(tiny_data):
    import functools

    import datasets
    import torch

    from vitinspect.data.arrow import MappedImages
    from vitinspect.model.prediction import predict_images, predict_proba, to_pixel_values
    from vitinspect.model.vit import InputSpec, build_scratch
    from vitinspect.config.params import params_from_dict
    from vitinspect.model.training import ImageDataset, PixelDataset, collate

    from conftest import tiny_dict

    ds = datasets.load_from_disk(str(tiny_data / "nsoartc"))["train"]
    rows = ds.with_format("numpy", columns=["nsoartc", "raw"])[:]  # the formatter's own (int64) reading
    images = MappedImages(ds, "nsoartc")
    assert images.shape == rows["nsoartc"].shape and images.dtype == np.uint8
    assert np.array_equal(images[:], rows["nsoartc"]) and np.array_equal(MappedImages(ds, "raw")[:], rows["raw"])
    pick = np.array([5, 0, len(ds) - 1, 5])
    assert np.array_equal(images[pick], rows["nsoartc"][pick]) and np.array_equal(images[3], rows["nsoartc"][3])
    mask = np.arange(len(ds)) % 3 == 0
    assert np.array_equal(images[mask], rows["nsoartc"][mask])

    spec = InputSpec(images.shape[1])
    labels = np.arange(len(ds)) % 4
    whole = PixelDataset(to_pixel_values(rows["nsoartc"].astype(np.uint8), spec), labels)
    streamed = ImageDataset(images, labels, functools.partial(to_pixel_values, spec=spec))
    a, b = collate([whole[i] for i in pick]), collate(streamed.__getitems__(list(pick)))
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
    assert torch.equal(streamed[7]["pixel_values"], whole[7]["pixel_values"])
    loader = torch.utils.data.DataLoader(streamed, batch_size=16, collate_fn=collate)
    assert torch.equal(torch.cat([batch["pixel_values"] for batch in loader]), whole.pixel_values)

    p = params_from_dict(tiny_dict())
    model = build_scratch(p.model, images.shape[1], ["a", "b", "c", "d"], 0)
    assert np.array_equal(predict_images(model, images, spec, 16), predict_proba(model, to_pixel_values(images[:], spec), 16))


def test_threads_auto_share_the_cores_among_dvc_queue_workers(monkeypatch):
    import torch

    from vitinspect.core import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(runtime, "cores", lambda: 8)
        monkeypatch.setattr(runtime, "queue_workers", lambda: 3)
        assert runtime.set_threads("auto") == 2 == torch.get_num_threads()
        assert runtime.set_threads(1.0) == 1 == torch.get_num_threads()
        monkeypatch.setattr(runtime, "queue_workers", lambda: 16)
        assert runtime.set_threads("auto") == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.undo()
    assert runtime.queue_workers() >= 1


def test_rows_are_read_from_the_folder_there_now_not_one_read_before_under_the_same_name(tmp_path, monkeypatch):
    """A long-lived process (a test run, a notebook) reads `parts` in two projects, or again after a rerun
    replaced it: each read sees the folder there now, whatever name it was given."""
    import datasets

    from vitinspect.data.arrow import Rows, read_rows

    def save(folder: Path, value: int) -> None:
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [value] * 4})}).save_to_disk(str(folder / "parts"))

    for project, value in ((tmp_path / "a", 1), (tmp_path / "b", 2)):
        save(project, value)
        monkeypatch.chdir(project)
        assert read_rows(Rows("parts", "train", 0, 4, ("x",)))["x"].tolist() == [value] * 4
    fresh = tmp_path / "b" / "rerun"
    save(fresh, 3)
    os.replace(fresh / "parts", tmp_path / "b" / "parts.new")
    import shutil

    shutil.rmtree(tmp_path / "b" / "parts")
    os.replace(tmp_path / "b" / "parts.new", tmp_path / "b" / "parts")
    assert read_rows(Rows("parts", "train", 0, 4, ("x",)))["x"].tolist() == [3] * 4


def _chunked_split(d: Path, rows: int, chunk: int, size: int = 8, seed: int = 0):
    """A split of ``rows`` parts-like rows written as chunk files of ``chunk`` rows, joined as prepare joins them."""
    from vitinspect.data.arrow import from_chunks, parts_features, write_chunk

    rng = np.random.default_rng(seed)
    features = parts_features(["passed", "tilt_x"], ["c", "l"], size)
    paths = []
    for k, a in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - a)
        cols = {"id": [f"part-{a + i:06d}" for i in range(n)], "label": rng.integers(0, 2, n).tolist(),
                "defect_terminal": rng.integers(-1, 4, n).astype(np.int32), "tilt": rng.random((n, 2), np.float32),
                "retraction": rng.random(n, np.float32), "bbox": rng.integers(0, size, (n, 4)).astype(np.int32),
                "mask": rng.integers(0, 2, (n, size, size), dtype=np.uint8),
                "views": rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)}
        paths.append(d / f"{seed}-{k:05d}.arrow")
        write_chunk(cols, features, ["passed", "tilt_x"], paths[-1])
    return from_chunks(paths, features)


def test_saved_splits_are_save_to_disk_byte_for_byte_in_every_layout(tmp_path, monkeypatch):
    """save_dataset writes what DatasetDict.save_to_disk writes (it only frees pages as it goes): one shard or
    several, record batches of 1,000 rows or fewer, splits longer than a batch from chunks that straddle
    batches, an empty split and an in-memory one."""
    import datasets
    from datasets import config

    from vitinspect.core.storage import save_dataset_dict

    (tmp_path / "chunks").mkdir()
    ds = datasets.DatasetDict({
        "train": _chunked_split(tmp_path / "chunks", 2300, 96),
        "val": _chunked_split(tmp_path / "chunks", 37, 16, seed=1),
        "test": _chunked_split(tmp_path / "chunks", 0, 16, seed=2),
        "mem": datasets.Dataset.from_dict({"x": list(range(1500))}),
    })
    for shard, group in (("500MB", "100MB"), ("60KB", "100MB"), ("500MB", "20KB")):
        monkeypatch.setattr(config, "MAX_SHARD_SIZE", shard)
        monkeypatch.setattr(config, "MAX_ROW_GROUP_SIZE", group)
        ours, theirs = tmp_path / f"ours-{shard}-{group}", tmp_path / f"theirs-{shard}-{group}"
        save_dataset_dict(ds, ours)
        ds.save_to_disk(str(theirs))
        files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
        assert [f for f in files if (ours / f).read_bytes() != (theirs / f).read_bytes()] == []
        if shard == "60KB":
            assert len(list((ours / "train").glob("data-*.arrow"))) > 1
        assert datasets.load_from_disk(str(ours / "train"))["id"] == ds["train"]["id"]


def test_no_progress_monitor_thread_lives_when_a_stage_forks(tmp_path):
    """datasets' progress bars would start tqdm's monitor thread; a process forked while it holds tqdm's lock
    hangs. Stages import vitinspect.core.runtime first, which keeps the thread from starting."""
    import subprocess
    import sys

    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1, 2]})}).save_to_disk(str(tmp_path / "d"))
    code = ("import threading, vitinspect.core.runtime, datasets\n"
            f"datasets.load_from_disk({str(tmp_path / 'd')!r})\n"
            "print(sorted(t.name for t in threading.enumerate()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['MainThread']", out

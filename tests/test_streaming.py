"""prepare and nsoartc stream in chunks over data.num_proc processes: the bytes they save depend on neither."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from conftest import load_stage, write_params


def _data_stages(d: Path, **data) -> dict[str, bytes]:
    """Run prepare and nsoartc in-process in ``d``; every file they wrote, path -> bytes."""
    params = write_params(d / "params.yaml", data=data)
    old = os.getcwd()
    os.chdir(d)
    try:
        load_stage("prepare").main(["--params", str(params), "--out", "parts", "--gallery", "samples.png"])
        load_stage("nsoartc").main(["--params", str(params), "--parts", "parts", "--out", "nsoartc", "--unit-space", "unit.npz",
                                    "--metrics", "data.json", "--figure", "nsoartc.png"])
    finally:
        os.chdir(old)
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file() and p.name != "params.yaml"}


def test_data_stage_bytes_do_not_depend_on_num_proc_and_match_the_in_memory_path(tmp_path, monkeypatch, tiny_params):
    from vitinspect import dataset
    from vitinspect.dataset import parts_features, to_dataset_dict
    from vitinspect.nsoartc import UnitSpace, double_eye
    from vitinspect.render import generate

    monkeypatch.setattr(dataset, "chunk_size", lambda size: 16)  # several chunks per split, merged in order
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = _data_stages(tmp_path / "one", num_proc=1)
    two = _data_stages(tmp_path / "two", num_proc=2)
    assert sorted(one) == sorted(two) and not any(".chunks" in k for k in one)  # scratch chunks removed
    assert [k for k in one if one[k] != two[k]] == []
    assert sum(k.startswith("nsoartc/train/data-") for k in one) == 1

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

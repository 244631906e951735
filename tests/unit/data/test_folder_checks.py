"""validate's checks of the user's folders (vitinspect.data.folder_checks): damaged data of every kind the header
scan passes, refused with one line naming the file or the class; harmless oddities accepted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_dict
from PIL import Image

from vitinspect.config.params import params_from_dict
from vitinspect.core.errors import VitinspectError
from vitinspect.data import folder_checks
from vitinspect.evaluation import rt_peer

VIEWS = ["center", "left", "right"]
CLASSES = ["good", "bad"]


def _view(path: Path, size=(40, 30), seed=0) -> None:
    rng = np.random.default_rng(seed)  # noise: the PNG's pixel data spans several kB
    Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(path)


def make_parts(root: Path, n=(12, 8)) -> Path:
    for c, count in zip(CLASSES, n):
        for i in range(count):
            folder = root / c / f"{c}{i:02d}"
            folder.mkdir(parents=True)
            for k, v in enumerate(VIEWS):
                _view(folder / f"{v}.png", seed=i * 10 + k)
    return root


def data_params(root: Path, **folders):
    d = tiny_dict(data={"source": "folders", "folders": {"path": str(root), "layout": "auto", "on_bad_part": "error", **folders},
                        "classes": CLASSES, "good_class": "good", "views": VIEWS, "grid": {"rows": 2, "cols": 2}},
                  nsoartc={"min_unit_space": 5})
    return params_from_dict(d)


def _check(root: Path, num_proc=1, **folders):
    p = data_params(root, **folders)
    return folder_checks.checked_plan(p.data, p.nsoartc.min_unit_space, num_proc)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_pixel_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 4 + 200  # inside the compressed pixels
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _exif_turned(folder: Path) -> None:
    """center as a JPEG whose EXIF orientation (6: turn 90 degrees) makes it 30x40 once decoded, the others 40x30."""
    (folder / "center.png").unlink()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("L", (40, 30), 90).save(folder / "center.jpg", exif=exif)


def _link_labels_outside(root: Path) -> None:
    (root / "labels.csv").symlink_to("/etc/passwd")


def _first(root: Path, cls: str) -> Path:
    return sorted((root / cls).iterdir())[0]


def _only_one(root: Path, cls: str) -> None:
    for d in sorted((root / cls).iterdir())[1:]:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


def _break_good(root: Path) -> None:
    for d in sorted((root / "good").iterdir())[:9]:
        _truncate(d / "left.png")


# (name, edit of the data root, params.data.folders changes, fragment of the one-line error)
FAULTS = [
    ("truncated view", lambda r: _truncate(_first(r, "bad") / "left.png"), {}, "bad00/left.png: unreadable image"),
    ("flipped pixel byte", lambda r: _flip_pixel_byte(_first(r, "good") / "right.png"), {}, "good00/right.png: unreadable image"),
    ("EXIF turn", lambda r: _exif_turned(_first(r, "bad")), {}, "bad00: views differ in size"),
    ("skip leaves too few good", _break_good, {"on_bad_part": "skip"},
     "good ('good') training parts (after on_bad_part: skip left out 9 parts), fewer than nsoartc.min_unit_space=5"),
    ("class of one part", lambda r: _only_one(r, "bad"), {}, "class 'bad'"),
    ("labels.csv links outside", _link_labels_outside, {}, "labels.csv: a link that leaves the data root"),
    ("labels.csv a folder", lambda r: (r / "labels.csv").mkdir(), {}, "labels.csv: a folder, not a labels file"),
    ("labels.csv a FIFO", lambda r: os.mkfifo(r / "labels.csv"), {}, "labels.csv: a FIFO, not a labels file"),
    ("not UTF-8 folder name", lambda r: (Path(os.fsdecode(bytes(r / "bad") + b"/caf\xe9"))).mkdir(), {}, "is not UTF-8 text"),
]


@pytest.mark.parametrize("name,edit,folders,fragment", FAULTS, ids=[f[0] for f in FAULTS])
def test_damaged_data_is_refused_in_one_line(tmp_path, name, edit, folders, fragment):
    root = make_parts(tmp_path / "parts")
    _check(root, **folders)  # intact: passes
    edit(root)
    with pytest.raises(VitinspectError) as err:
        _check(root, **folders)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg and len(msg) < 400
    assert "root:" not in msg  # a refused file's content is never echoed (/etc/passwd's first line)


def test_the_first_bad_part_is_named_whatever_the_processes(tmp_path):
    root = make_parts(tmp_path / "parts", n=(40, 30))
    for i in (3, 17, 25):
        _truncate(root / "bad" / f"bad{i:02d}" / "center.png")
    with pytest.raises(VitinspectError, match="bad03/center.png"):
        _check(root, num_proc=1)
    with pytest.raises(VitinspectError, match="bad03/center.png"):
        _check(root, num_proc=2)
    found = _check(root, num_proc=2, on_bad_part="skip")
    assert [x["part"] for x in found.skipped] == ["bad03", "bad17", "bad25"] and len(found.parts) == 67


def test_a_sidecar_named_after_a_view_is_not_a_second_image(tmp_path):
    root = make_parts(tmp_path / "parts")
    (_first(root, "good") / "center.json").write_text("{}")
    assert len(_check(root).parts) == 20
    (_first(root, "good") / "center.png").unlink()
    with pytest.raises(VitinspectError, match=r"missing view 'center' .*center.json is not an image"):
        _check(root)


def test_an_empty_lot_says_so(tmp_path):
    p = data_params(make_parts(tmp_path / "parts"))
    lot = tmp_path / "lot"
    (lot / "parts").mkdir(parents=True)
    lot_params = type("L", (), {"folders": type("F", (), {"path": str(lot)})})
    with pytest.raises(VitinspectError, match="no part folders in it"):
        folder_checks.checked_lot(lot_params, p.data, 1)
    (lot / "parts" / "p1").mkdir()  # ROOT/parts/<part_id>/ as in the labels layout
    for k, v in enumerate(VIEWS):
        _view(lot / "parts" / "p1" / f"{v}.png", seed=k)
    found = folder_checks.checked_lot(lot_params, p.data, 1)
    assert found.layout == "unlabelled" and [q.id for q in found.parts] == ["p1"]


def test_the_peer_and_validate_agree_on_the_fewest_training_parts_per_class():
    assert rt_peer.MIN_TRAIN_PER_CLASS == folder_checks.MIN_TRAIN_PER_CLASS


def test_the_peer_calibrates_on_fewer_folds_when_a_class_has_fewer_parts():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(23, 4)), np.array([0] * 10 + [1] * 10 + [2] * 3)
    with pytest.raises(ValueError):
        rt_peer.make_svm(1.0, 0.1, "none", 0).fit(x, y)  # five folds, three parts: scikit-learn refuses
    assert rt_peer.make_svm(1.0, 0.1, "none", 0, folds=3).fit(x, y).predict_proba(x).shape == (23, 3)

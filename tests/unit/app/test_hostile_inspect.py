"""`vitinspect inspect`, `--watch` and `render` used as a hostile user would: the table.

Every case asserts its exit code, a one-line message (no traceback, never the "a bug" catch-all) and that
every file, folder and link the user had is byte-identical afterwards (apart from the outputs the case
names as replaceable). Each case is a function that sets the scene in a fresh folder and returns the argv.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from vitinspect.app.results import explain_name
from vitinspect.app.command import main as cli_main
from vitinspect.core.errors import VitinspectError

VIEWS = ("center", "left", "right")


# ------------------------------------------------------------------ helpers

def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind and content (bytes' hash, link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, os.fsencode(root))
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            elif os.path.isfile(p):
                with open(p, "rb") as fh:
                    out[rel] = ("file", hashlib.sha256(fh.read()).hexdigest())
            else:
                out[rel] = ("other", st.st_mode)
    return out


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(w: int, h: int, idat: bytes = zlib.compress(b"\0" * 16)) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def big_black_png(side: int) -> bytes:
    """A real, complete side x side grey PNG of zeros (decodes to side^2 bytes), made without holding it."""
    z = zlib.compressobj(1)
    row = b"\0" * (side + 1)
    parts = [z.compress(row * 200) for _ in range(side // 200)] + [z.compress(row * (side % 200)), z.flush()]
    return png_header(side, side, b"".join(parts))


def rows_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def part(lot: Path, i: int = 0) -> Path:
    return sorted(d for d in lot.iterdir() if d.is_dir())[i]


@pytest.fixture(scope="session")
def rendered(tiny_bundle, tmp_path_factory):  # noqa: F811
    """A 4-part lot rendered once; each case copies it."""
    lot = tmp_path_factory.mktemp("hostile") / "lot"
    assert cli_main(["render", "--n", "4", "--seed", "3", "--out", str(lot), "--bundle", str(tiny_bundle)]) == 0
    return lot


class T:
    """The scene of one case: the folder it runs in, a lot of four parts there, the bundle, monkeypatch."""

    def __init__(self, root: Path, lot: Path, bundle: Path, mp):
        self.root, self.lot, self.bundle, self.mp = root, lot, bundle, mp
        self.check = None  # optional extra assertions: check(stdout, stderr)


CASES: dict = {}


def case(rc: int, fragment: str | None = None, where: str = "stderr", changes: tuple = ()):
    """Register a case. where: "stderr" (one line ``error: ...`` holding fragment), "rows" (fragment in a
    printed row, exit 1), "stderr_warning" (fragment on stderr, no error line), "line" (one line holding fragment),
    "ok" (exit 0). changes: paths the run may replace (outputs the case allows)."""

    def deco(fn):
        CASES[fn.__name__] = (fn, rc, fragment, where, changes)
        return fn

    return deco


# ------------------------------------------------------------------ outputs never destroy a user's file

@case(2, "is a folder")
def out_is_a_folder(t):
    (t.root / "results.csv").mkdir()
    (t.root / "results.csv" / "keep.txt").write_text("mine")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "is a folder")
def out_json_is_a_folder(t):
    (t.root / "r.json" / "sub").mkdir(parents=True)
    return ["inspect", "lot", "--out", "r.json"]


@case(2, "symbolic link")
def out_is_a_link_to_a_file(t):
    (t.root / "elsewhere.csv").write_text("a,b\n1,2\n")
    (t.root / "results.csv").symlink_to(t.root / "elsewhere.csv")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "symbolic link")
def out_is_a_dangling_link(t):
    (t.root / "results.csv").symlink_to(t.root / "nowhere.csv")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "symbolic link")
def out_is_a_link_to_dev_null(t):
    (t.root / "results.csv").symlink_to("/dev/null")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "FIFO")
def out_is_a_fifo(t):
    os.mkfifo(t.root / "results.csv")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "not a results file")
def out_is_a_users_csv(t):
    (t.root / "results.csv").write_text("name,salary\nann,100\n")
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "not a results file")
def out_is_a_users_json(t):
    (t.root / "results.json").write_text('{"config": 1}\n')
    return ["inspect", "lot", "--out", "results.json"]


@case(2, "not a results file")
def out_is_binary(t):
    (t.root / "results.csv").write_bytes(bytes(range(256)) * 4)
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "not a results file")
def out_is_the_lots_truth(t):
    return ["inspect", "lot", "--out", "lot/truth.csv"]


@case(2, "not a results file")
def out_is_the_lots_labels(t):
    return ["inspect", "lot", "--out", "lot/labels.csv"]


@case(0, where="ok", changes=("results.csv",))
def out_replaces_an_earlier_results_csv(t):
    header = ["part", "verdict", "class", "p_x", "error"]
    (t.root / "results.csv").write_text(",".join(header) + "\r\nold,pass,x,1,\r\n")
    t.check = lambda out, err: len(rows_csv(t.root / "results.csv")) == 4
    return ["inspect", "lot", "--out", "results.csv"]


@case(0, where="ok", changes=("r.json",))
def out_replaces_an_earlier_results_json(t):
    (t.root / "r.json").write_text('[{"part": "old", "verdict": "pass"}]\n')
    t.check = lambda out, err: len(json.loads((t.root / "r.json").read_text())) == 4
    return ["inspect", "lot", "--out", "r.json"]


@case(0, where="ok", changes=("results.csv",))
def out_replaces_an_empty_file(t):
    (t.root / "results.csv").touch()
    return ["inspect", "lot", "--out", "results.csv"]


@case(2, "does not exist")
def out_in_a_missing_folder(t):
    t.check = lambda out, err: not (t.root / "missing").exists()
    return ["inspect", "lot", "--out", "missing/sub/results.csv"]


@case(2, "is not a folder")
def out_under_a_file(t):
    (t.root / "afile").write_text("mine")
    return ["inspect", "lot", "--out", "afile/results.csv"]


@case(2, "must end in .csv or .json")
def out_with_another_suffix(t):
    return ["inspect", "lot", "--out", "results.txt"]


@case(2, "exists and is not a folder")
def explain_is_a_file(t):
    (t.root / "why").write_text("mine")
    return ["inspect", "lot", "--explain", "why"]


@case(1, "no --explain image", where="stderr_warning")
def explain_image_path_is_a_folder(t):
    (t.root / "why" / explain_name(Path("lot") / "part-00000")).mkdir(parents=True)
    (t.root / "why" / explain_name(Path("lot") / "part-00000") / "mine.txt").write_text("keep")
    t.check = lambda out, err: len(list((t.root / "why").glob("*.png"))) == 4 and out.count("\t") >= 16
    return ["inspect", "lot", "--explain", "why"]


# ------------------------------------------------------------------ render

@case(2, "is not empty")
def render_into_a_users_folder(t):
    (t.root / "mine").mkdir()
    (t.root / "mine" / "thesis.txt").write_text("years of work")
    return ["render", "--n", "2", "--out", "mine"]


@case(2, "is not empty")
def render_into_an_earlier_lot(t):
    return ["render", "--n", "2", "--out", "lot"]


@case(2, "replaces only a lot render wrote")
def render_force_into_a_users_folder(t):
    (t.root / "mine").mkdir()
    (t.root / "mine" / "thesis.txt").write_text("years of work")
    return ["render", "--n", "2", "--out", "mine", "--force"]


@case(2, "working folder")
def render_force_into_the_working_folder(t):
    (t.root / "truth.csv").write_text("part,label\n")
    (t.root / "labels.csv").write_text("part_id,label,split\n")
    return ["render", "--n", "2", "--out", ".", "--force"]


@case(0, where="ok", changes=("lot",))
def render_force_replaces_an_earlier_lot_whole(t):
    def check(out, err):
        names = sorted(p.name for p in (t.root / "lot").iterdir())
        truth = rows_csv(t.root / "lot" / "truth.csv")
        return names == ["labels.csv", "part-00000", "part-00001", "truth.csv"] and len(truth) == 2

    t.check = check
    return ["render", "--n", "2", "--out", "lot", "--force"]


@case(0, where="ok")
def render_into_an_empty_folder(t):
    (t.root / "empty").mkdir()
    t.check = lambda out, err: len(rows_csv(t.root / "empty" / "truth.csv")) == 2
    return ["render", "--n", "2", "--out", "empty"]


@case(2, "not a folder")
def render_onto_a_file(t):
    (t.root / "lot2").write_text("mine")
    return ["render", "--n", "2", "--out", "lot2"]


@case(2, "symbolic link")
def render_onto_a_link(t):
    (t.root / "real").mkdir()
    (t.root / "lot2").symlink_to(t.root / "real")
    return ["render", "--n", "2", "--out", "lot2"]


@case(2, "does not exist")
def render_into_a_missing_parent(t):
    return ["render", "--n", "2", "--out", "no/such/lot"]


@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e12", "abc", "100001"])
def test_render_bad_n(tiny_bundle, in_tmp, capsys, value):  # noqa: F811
    assert cli_main(["render", "--n", value, "--out", "lot", "--bundle", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n must be a positive integer" in err[0], err
    assert not (in_tmp / "lot").exists()


@case(2, "--seed must be an integer")
def render_negative_seed(t):
    return ["render", "--n", "2", "--seed", "-1", "--out", "new"]


# ------------------------------------------------------------------ one bad part never loses the lot

def _bad_view(write):
    """A case: part-00000's center view replaced by ``write(path)``; the other three parts are judged."""

    def scene(t):
        for f in part(t.lot).glob("center.*"):
            f.unlink()
        write(part(t.lot) / "center.png")
        t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 4 and sum(
            1 for r in rows_csv(t.root / "r.csv") if r["error"]) == 1
        return ["inspect", "lot", "--out", "r.csv"]

    return scene


def _register_bad_view(name, fragment, write):
    CASES[name] = (_bad_view(write), 1, fragment, "rows", ("r.csv",))


def _png_bytes(arr, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=kw.pop("format", "PNG"), **kw)
    return buf.getvalue()


GOOD = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
_register_bad_view("bomb_header", "refused before decoding", lambda p: p.write_bytes(png_header(100_000, 100_000)))
_register_bad_view("strip_header_too_long_a_side", "refused before decoding", lambda p: p.write_bytes(png_header(60_000_000, 1)))
_register_bad_view("zero_width_header", "center.png", lambda p: p.write_bytes(png_header(0, 32)))
_register_bad_view("broken_png_chunk_crc", "center.png: unreadable image",
                   lambda p: p.write_bytes(_png_bytes(GOOD)[:40] + b"\xff\xff" + _png_bytes(GOOD)[42:]))
_register_bad_view("truncated_png", "center.png: unreadable image", lambda p: p.write_bytes(_png_bytes(GOOD)[:60]))
_register_bad_view("empty_view", "center.png: unreadable image", lambda p: p.write_bytes(b""))
_register_bad_view("not_an_image", "not an image format PIL reads", lambda p: p.write_text("hello"))
_register_bad_view("corrupt_tiff_header", "center.png: unreadable image",
                   lambda p: p.write_bytes(b"II*\x00" + b"\xff" * 4 + _png_bytes(GOOD, format="TIFF")[8:]))
_register_bad_view("corrupt_jpeg_header", "center.png: unreadable image",
                   lambda p: p.write_bytes(b"\xff\xd8\xff\xc0\x00\x11\x08\xff\xff" + b"\x00" * 40))
_register_bad_view("truncated_jpeg_body", "center.png", lambda p: p.write_bytes(_png_bytes(GOOD, format="JPEG")[:30]))
_register_bad_view("view_is_a_folder", "missing view 'center'", lambda p: p.mkdir())
_register_bad_view("view_is_a_fifo", "missing view 'center'", lambda p: os.mkfifo(p))
_register_bad_view("view_links_to_dev_zero", "missing view 'center'", lambda p: p.symlink_to("/dev/zero"))
_register_bad_view("view_is_a_dangling_link", "missing view 'center'", lambda p: p.symlink_to(p.parent / "gone.png"))
_register_bad_view("two_images_for_a_view", "several images for view 'center'",
                   lambda p: (p.write_bytes(_png_bytes(GOOD)), p.with_suffix(".jpg").write_bytes(_png_bytes(GOOD, format="JPEG"))))
_register_bad_view("views_differ_in_size", "views differ in size", lambda p: p.write_bytes(_png_bytes(np.zeros((30, 32), np.uint8))))


@case(1, "missing view 'left'", where="rows", changes=("r.csv",))
def missing_view(t):
    (part(t.lot) / "left.png").unlink()
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "out of memory", where="rows", changes=("r.csv",))
def memory_error_while_decoding(t):
    import vitinspect.data.images as images

    real = images._to_uint8

    def boom(im):
        if im.size == (32, 32) and getattr(boom, "n", 0) == 0:
            boom.n = 1
            raise MemoryError
        return real(im)

    t.mp.setattr(images, "_to_uint8", boom)
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "DecompressionBombError", where="rows", changes=("r.csv",))
def pil_raises_its_bomb_error(t):
    from PIL import Image as PILImage

    real = PILImage.open

    def bomb(path, *a, **kw):
        if "part-00001" in str(path) and Path(path).stem == "left":
            raise PILImage.DecompressionBombError("Image size (1 pixels) exceeds limit")
        return real(path, *a, **kw)

    t.mp.setattr(PILImage, "open", bomb)
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "ValueError", where="rows", changes=("r.csv",))
def pil_raises_value_error_on_load(t):
    from PIL import ImageOps

    real = ImageOps.exif_transpose

    def bad(im, *a, **kw):
        if "part-00002" in str(getattr(im, "filename", "")):
            raise ValueError("tile cannot extend outside image")
        return real(im, *a, **kw)

    t.mp.setattr(ImageOps, "exif_transpose", bad)
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "Permission denied", where="rows", changes=("r.csv",))
def permission_denied_on_a_part(t):
    real = Path.iterdir

    def denied(self):
        if self.name == "part-00001":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    t.mp.setattr(Path, "iterdir", denied)
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "FileNotFoundError", where="rows", changes=("r.csv", "lot/part-00003"))
def part_folder_removed_mid_lot(t):
    import vitinspect.data.images as images

    real = images.load_grey

    def load_and_remove(path, *a, **kw):
        victim = t.lot / "part-00003"
        if victim.exists():
            shutil.rmtree(victim)  # removed while the lot runs, after the lot was listed
        return real(path, *a, **kw)

    t.mp.setattr(images, "load_grey", load_and_remove)
    t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 4
    return ["inspect", "lot", "--out", "r.csv"]


def _save_views(folder: Path, arr, ext="png", **kw):
    for v in VIEWS:
        Image.fromarray(arr).save(folder / f"{v}.{ext}", **kw)


@case(0, where="ok")
def sixteen_bit_views_are_judged(t):
    for f in part(t.lot).iterdir():
        f.unlink()
    _save_views(part(t.lot), (GOOD.astype(np.uint16) * 257))
    return ["inspect", "lot"]


@case(0, where="ok")
def float_tiff_views_beyond_one_are_judged(t):
    for f in part(t.lot).iterdir():
        f.unlink()
    _save_views(part(t.lot), GOOD.astype(np.float32) * 100.0, ext="tif")
    return ["inspect", "lot"]


@case(0, where="ok")
def cmyk_jpeg_and_animated_gif_views(t):
    for f in part(t.lot).iterdir():
        f.unlink()
    rgb = np.stack([GOOD] * 3, axis=-1)
    Image.fromarray(rgb).convert("CMYK").save(part(t.lot) / "center.jpg")
    frames = [Image.fromarray(GOOD), Image.fromarray(255 - GOOD)]
    frames[0].save(part(t.lot) / "left.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rgb).convert("P").save(part(t.lot) / "right.bmp")
    return ["inspect", "lot"]


# ------------------------------------------------------------------ names and text

def _copy_part(src: Path, dest: bytes | Path) -> None:
    os.mkdir(dest)
    for f in src.iterdir():
        shutil.copyfile(f, os.path.join(dest, os.fsencode(f.name)) if isinstance(dest, bytes) else dest / f.name)


@case(0, where="ok", changes=("r.csv",))
def non_utf8_folder_name(t):
    _copy_part(part(t.lot), os.fsencode(t.lot) + b"/bad-\xff\xfe")

    def check(out, err):
        names = [r["part"] for r in rows_csv(t.root / "r.csv")]
        return "lot/bad-\\xff\\xfe" in names and "lot/bad-\\xff\\xfe" in out

    t.check = check
    return ["inspect", "lot", "--out", "r.csv"]


@case(0, where="ok", changes=("r.csv",))
def newline_in_a_folder_name(t):
    _copy_part(part(t.lot), t.lot / "two\nlines")
    t.check = lambda out, err: "lot/two\\x0alines" in [r["part"] for r in rows_csv(t.root / "r.csv")] and \
        len(out.strip().splitlines()) == 5
    return ["inspect", "lot", "--out", "r.csv"]


@case(0, where="ok", changes=("r.csv",))
def formula_folder_names_are_neutralised(t):
    for name in ("=HYPERLINK(1)", "+1", "-1", "@SUM(A1)"):
        _copy_part(part(t.lot), t.root / name)

    def check(out, err):
        cells = [r["part"] for r in rows_csv(t.root / "r.csv")]
        return cells == ["'=HYPERLINK(1)", "'+1", "'-1", "'@SUM(A1)"]

    t.check = check
    return ["inspect", "--out", "r.csv", "=HYPERLINK(1)", "+1", "--", "-1", "@SUM(A1)"]


@case(0, where="ok", changes=("r.json",))
def formula_folder_names_stay_as_they_are_in_json(t):
    _copy_part(part(t.lot), t.root / "=cmd")
    t.check = lambda out, err: [r["part"] for r in json.loads((t.root / "r.json").read_text())] == ["=cmd"]
    return ["inspect", "=cmd", "--out", "r.json"]


@case(0, where="ok", changes=("r.csv",))
def a_part_named_twice_is_judged_once(t):
    t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 1
    return ["inspect", "lot/part-00000", "lot/part-00000/", "./lot/part-00000", "--out", "r.csv"]


# ------------------------------------------------------------------ ambiguous or missing input

@case(2, "is both a part and a lot")
def lot_with_views_at_its_root(t):
    for v in VIEWS:
        shutil.copy(part(t.lot) / f"{v}.png", t.lot / f"{v}.png")
    return ["inspect", "lot"]


@case(2, "is both a part and a lot")
def part_with_a_part_inside(t):
    _copy_part(part(t.lot, 1), part(t.lot) / "again")
    return ["inspect", "lot/part-00000"]


@case(1, "is both a part and a lot", where="rows")
def a_lots_member_holding_a_part(t):
    _copy_part(part(t.lot, 1), part(t.lot) / "again")
    return ["inspect", "lot"]


@case(2, "no such part folder")
def part_does_not_exist(t):
    return ["inspect", "nowhere"]


@case(2, "not a folder")
def part_is_a_file(t):
    return ["inspect", "lot/part-00000/center.png"]


@case(2, "cannot list")
def lot_cannot_be_listed(t):
    real = Path.iterdir

    def denied(self):
        if self.name == "lot":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    t.mp.setattr(Path, "iterdir", denied)
    return ["inspect", "lot"]


@case(2, "an empty path")
def empty_part_path(t):
    return ["inspect", ""]


@case(2, "give at least one PART")
def no_part(t):
    return ["inspect"]


@case(2, "bundle.json")
def bundle_missing(t):
    return ["inspect", "lot", "--bundle", "nobundle"]


@case(2, "argument --engine")
def bad_engine(t):
    return ["inspect", "lot", "--engine", "tensorrt"]


@case(130, "interrupted", where="line")
def ctrl_c_in_a_lot_writes_nothing(t):
    import vitinspect.app.results as results  # judges each batch with the engine's judge

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    t.mp.setattr(results, "judge", interrupted)
    t.check = lambda out, err: not (t.root / "r.csv").exists()
    return ["inspect", "lot", "--out", "r.csv"]


@case(2, "cannot make the folder")
def explain_under_a_file(t):
    (t.root / "afile").write_text("mine")
    return ["inspect", "lot", "--explain", "afile/why"]


@case(2, "no such part folder")
def part_is_a_symlink_loop(t):
    (t.root / "loop").symlink_to(t.root / "loop")
    return ["inspect", "loop"]


@case(0, where="ok", changes=("r.csv",))
def hidden_folders_in_a_lot_are_not_parts(t):
    (t.lot / ".thumbnails").mkdir()
    (t.lot / ".thumbnails" / "center.png").write_bytes(b"x")
    t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 4
    return ["inspect", "lot", "--out", "r.csv"]


@case(1, "missing view 'center'", where="rows", changes=("r.csv",))
def a_folder_in_a_lot_that_is_no_part(t):
    (t.lot / "notes").mkdir()
    (t.lot / "notes" / "readme.txt").write_text("not a part")
    t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 5
    return ["inspect", "lot", "--out", "r.csv"]


@case(0, where="ok", changes=("r.csv",))
def a_lot_and_one_of_its_parts(t):
    t.check = lambda out, err: len(rows_csv(t.root / "r.csv")) == 4
    return ["inspect", "lot", "lot/part-00002", "--out", "r.csv"]


@case(2, "exists and is not a folder")
def render_onto_a_fifo(t):
    os.mkfifo(t.root / "lot2")
    return ["render", "--n", "2", "--out", "lot2"]


@case(0, where="ok")
def render_force_into_a_new_folder(t):
    return ["render", "--n", "2", "--out", "fresh", "--force"]


@case(2, "--watch takes no PART")
def watch_with_explain(t):
    (t.root / "inbox").mkdir()
    return ["inspect", "--watch", "inbox", "--explain", "why"]


@case(2, "--watch takes no PART")
def watch_with_a_part(t):
    (t.root / "inbox").mkdir()
    return ["inspect", "lot", "--watch", "inbox"]


@case(2, "--max-parts counts the parts --watch judges")
def max_parts_without_watch(t):  # it used to be ignored without a word
    return ["inspect", "lot", "--max-parts", "3"]


# ------------------------------------------------------------------ --watch arguments

@pytest.mark.parametrize("option, value", [("--poll", "nan"), ("--poll", "inf"), ("--poll", "0"), ("--poll", "-1"),
                                           ("--poll", "soon"), ("--settle", "0"), ("--settle", "-inf"),
                                           ("--settle", "1e400"), ("--max-parts", "0"), ("--max-parts", "-3"),
                                           ("--max-parts", "2.5"), ("--max-parts", "nan"), ("--timeout", "0")])
def test_watch_bad_numbers_one_line(tiny_bundle, in_tmp, capsys, option, value):  # noqa: F811
    (in_tmp / "inbox").mkdir()
    assert cli_main(["inspect", "--watch", "inbox", option, value, "--bundle", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and option in err[0], err


@case(2, "differs from this bundle's")
def watch_out_with_another_header(t):
    (t.root / "inbox").mkdir()
    (t.root / "line.csv").write_text("part,verdict,class,p_a,p_b,error\r\nx,pass,a,1,0,\r\n")
    return ["inspect", "--watch", "inbox", "--out", "line.csv", "--max-parts", "1"]


@case(2, "not a results file")
def watch_out_is_a_users_file(t):
    (t.root / "inbox").mkdir()
    (t.root / "line.csv").write_text("my,notes\n")
    return ["inspect", "--watch", "inbox", "--out", "line.csv"]


@case(2, "is a folder")
def watch_out_is_a_folder(t):
    (t.root / "inbox").mkdir()
    (t.root / "line.csv").mkdir()
    return ["inspect", "--watch", "inbox", "--out", "line.csv"]


@case(2, "appends to a .csv")
def watch_out_json(t):
    (t.root / "inbox").mkdir()
    return ["inspect", "--watch", "inbox", "--out", "line.json"]


@case(2, "no such folder")
def watch_missing_folder(t):
    return ["inspect", "--watch", "inbox", "--out", "line.csv"]


@case(2, "no such folder")
def watch_a_file(t):
    (t.root / "inbox").write_text("x")
    return ["inspect", "--watch", "inbox"]


@case(2, "holds view images at its root")
def watch_a_part(t):
    return ["inspect", "--watch", "lot/part-00000"]


# ------------------------------------------------------------------ the table's runner

@pytest.mark.parametrize("name", list(CASES))
def test_hostile(name, tiny_bundle, rendered, tmp_path, monkeypatch, capsys):  # noqa: F811
    scene, rc, fragment, where, changes = CASES[name]
    monkeypatch.chdir(tmp_path)
    shutil.copytree(rendered, tmp_path / "lot")
    t = T(tmp_path, tmp_path / "lot", tiny_bundle, monkeypatch)
    argv = scene(t)
    if argv[0] in ("inspect", "render") and "--bundle" not in argv:
        argv = [argv[0], "--bundle", str(tiny_bundle), *argv[1:]]
    before = snapshot(tmp_path)
    start = time.monotonic()
    got = cli_main(argv)
    took = time.monotonic() - start
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "a bug" not in err, err
    assert got == rc, (got, err)
    lines = err.strip().splitlines()
    if where == "stderr":
        assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    elif where == "line":
        assert len(lines) == 1 and fragment in lines[0], err
    elif where == "stderr_warning":
        assert fragment in err and len(lines) <= 2 and not any(x.startswith("error:") for x in lines), err
    elif where == "rows":
        assert fragment in out and len(lines) <= 2, (out, err)
        bad = [x for x in out.splitlines() if "\terror\t" in x]
        assert bad and all(len(x.split("\t")) == 3 for x in bad), out
    else:
        assert not any(x.startswith("error:") for x in lines), err
    after = snapshot(tmp_path)
    allowed = [os.fsencode(c) for c in changes]
    for path, what in before.items():
        if any(path == a or path.startswith(a + b"/") for a in allowed):
            continue
        assert after.get(path) == what, f"{path!r} changed: {what} -> {after.get(path)}"
    assert t.check is None or t.check(out, err), (out, err)
    assert took < 30


def test_the_table_is_large_enough():
    assert len(CASES) >= 50, len(CASES)


# ------------------------------------------------------------------ beyond the table

def test_three_huge_views_are_refused_from_their_headers_in_well_under_a_second(tmp_path):
    from vitinspect.app.lot_reader import read_part

    data = big_black_png(13_370)
    assert len(data) < 1_000_000
    folder = tmp_path / "p"
    folder.mkdir()
    for v in VIEWS:
        (folder / f"{v}.png").write_bytes(data)
    start = time.monotonic()
    views, err = read_part(folder, list(VIEWS), 32)
    assert time.monotonic() - start < 0.5
    assert views is None and "13370x13370 px is over" in err and "refused before decoding" in err


def test_sixteen_bit_and_float_views_are_scaled_not_clipped(tmp_path):
    from vitinspect.data.images import load_grey

    ramp = np.linspace(0, 1, 64 * 32, dtype=np.float64).reshape(32, 64)
    cases = {"i16.png": (ramp * 65535).astype(np.uint16), "i32.tif": (ramp * 1_000_000).astype(np.int32),
             "f01.tif": ramp.astype(np.float32), "f1000.tif": (ramp * 1000).astype(np.float32),
             "neg.tif": (ramp * 2 - 1).astype(np.float32)}
    for name, arr in cases.items():
        Image.fromarray(arr).save(tmp_path / name)
        g = load_grey(tmp_path / name)
        assert g.min() == 0 and g.max() == 255, name  # the full range, scaled
        assert (g == 255).mean() < 0.01, name  # never clipped to white
        assert np.all(np.diff(g[0].astype(int)) >= 0), name  # order kept
    nan = np.full((4, 4), np.nan, np.float32)
    nan[0, 0] = 0.5
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    assert load_grey(tmp_path / "nan.tif")[0, 0] == 128 and load_grey(tmp_path / "nan.tif")[1, 1] == 0


def test_two_lots_with_the_same_part_names_keep_their_own_images(tiny_bundle, rendered, in_tmp):  # noqa: F811
    shutil.copytree(rendered, in_tmp / "a")
    shutil.copytree(rendered, in_tmp / "b")
    argv = ["--explain", "why", "--bundle", str(tiny_bundle)]
    assert cli_main(["inspect", "a", *argv]) == 0
    assert cli_main(["inspect", "b", *argv]) == 0
    assert cli_main(["inspect", "a/part-00000", "b/part-00000", *argv]) == 0  # the same names: the same images
    images = sorted(p.name for p in (in_tmp / "why").iterdir())
    assert len(images) == 8 and images == sorted({explain_name(Path(x) / p.name) for x in "ab" for p in part_list(rendered)})
    assert explain_name(Path("a/part-00000")) == explain_name(in_tmp / "a" / "part-00000")


def part_list(lot: Path):
    return sorted(d for d in lot.iterdir() if d.is_dir())


def test_non_utf8_names_are_escaped_alike_in_csv_and_json(tiny_bundle, rendered, in_tmp):  # noqa: F811
    shutil.copytree(rendered, in_tmp / "lot")
    _copy_part(part(in_tmp / "lot"), os.fsencode(in_tmp / "lot") + b"/x\xff")
    for out in ("r.csv", "r.json"):
        assert cli_main(["inspect", "lot", "--out", out, "--bundle", str(tiny_bundle)]) == 0
    from_csv = [r["part"] for r in rows_csv(in_tmp / "r.csv")]
    from_json = [r["part"] for r in json.loads((in_tmp / "r.json").read_text(encoding="utf-8"))]
    assert from_csv == from_json and "lot/x\\xff" in from_csv


def test_review_out_and_comment_never_replace_a_folder(in_tmp, monkeypatch):
    """review's outputs go through the same atomic write: a folder at --out or --comment is refused, intact."""
    from vitinspect.review import pr_report as review

    monkeypatch.setattr(review, "run_command", lambda cmd, check=True: "0" * 40 if "rev-parse" in cmd else "")
    for flag in ("--out", "--comment"):
        (in_tmp / "reports" / "pr.md").mkdir(parents=True, exist_ok=True)
        (in_tmp / "reports" / "pr.md" / "keep.txt").write_text("mine")
        (in_tmp / "c.md").mkdir(exist_ok=True)
        (in_tmp / "c.md" / "keep.txt").write_text("mine too")
        before = snapshot(in_tmp)
        argv = ["--base", "main", "--out", "reports/pr.md"] if flag == "--out" else \
            ["--base", "main", "--out", "reports/new.md", "--comment", "c.md"]
        with pytest.raises(VitinspectError, match="is a folder"):
            review.main(argv)
        after = snapshot(in_tmp)
        assert {k: v for k, v in after.items() if k in before} == before


def test_atomic_path_refuses_every_other_kind_and_keeps_it(tmp_path, monkeypatch):
    from vitinspect.core.storage import atomic_path, write_text

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "f").write_text("keep")
    for name in ("d", "link", "fifo"):
        with pytest.raises(VitinspectError, match="left as it is"):
            write_text(tmp_path / name, "new")
    with pytest.raises(VitinspectError, match="is a file"):
        with atomic_path(tmp_path / "f", is_dir=True):
            pass
    assert (tmp_path / "d" / "x").read_text() == "keep" and (tmp_path / "f").read_text() == "keep"
    assert (tmp_path / "link").is_symlink() and Path(tmp_path / "fifo").is_fifo()
    write_text(tmp_path / "f", "new")  # a regular file is what it writes: replaced
    assert (tmp_path / "f").read_text() == "new"
    from vitinspect.core.runtime import output_path

    monkeypatch.chdir(tmp_path)
    assert output_path("d") == "d" and output_path("f", file=True) == "f"  # a folder output, a file output
    for name, kw in (("d", {"file": True}), ("link", {}), ("fifo", {})):
        with pytest.raises(VitinspectError, match="left as it is"):
            output_path(name, **kw)
    (tmp_path / ".f.abcdefgh.tmp").write_text("a user's file named like our temporaries")
    write_text(tmp_path / "f", "again")
    assert (tmp_path / ".f.abcdefgh.tmp").exists()


# ------------------------------------------------------------------ --watch in motion

def _watch(bundle, *extra):
    return ["inspect", "--watch", "inbox", "--out", "line.csv", "--poll", "0.05", "--settle", "0.2",
            "--bundle", str(bundle), *extra]


def _later(fn, delay=0.0):
    th = threading.Thread(target=lambda: (time.sleep(delay), fn()), daemon=True)
    th.start()
    return th


def test_watch_retries_a_half_written_part_until_it_reads(tiny_bundle, rendered, in_tmp):  # noqa: F811
    src = part(rendered)
    (in_tmp / "inbox" / "p").mkdir(parents=True)
    for v in ("left", "right"):
        shutil.copy(src / f"{v}.png", in_tmp / "inbox" / "p" / f"{v}.png")
    (in_tmp / "inbox" / "p" / "center.png").write_bytes((src / "center.png").read_bytes()[:50])  # still being written
    th = _later(lambda: shutil.copy(src / "center.png", in_tmp / "inbox" / "p" / "center.png"), 1.0)
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1")) == 0
    th.join()
    rows = rows_csv(in_tmp / "line.csv")
    assert len(rows) == 1 and rows[0]["error"] == "" and rows[0]["verdict"] in ("pass", "reject", "unknown")


def test_watch_gives_up_on_a_part_that_stays_broken(tiny_bundle, in_tmp):  # noqa: F811
    (in_tmp / "inbox" / "p").mkdir(parents=True)
    for v in VIEWS:
        (in_tmp / "inbox" / "p" / f"{v}.png").write_text("never an image")
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1", "--timeout", "0.5")) == 1
    rows = rows_csv(in_tmp / "line.csv")
    assert len(rows) == 1 and "unreadable image" in rows[0]["error"]


def test_watch_restart_resumes_and_a_reused_name_is_judged_again(tiny_bundle, rendered, in_tmp):  # noqa: F811
    inbox = in_tmp / "inbox"
    inbox.mkdir()
    shutil.copytree(part(rendered, 0), inbox / "a")
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1")) == 0
    shutil.copytree(part(rendered, 1), inbox / "b")
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1")) == 0  # a restart: "a" is in line.csv already
    assert [Path(r["part"]).name for r in rows_csv(in_tmp / "line.csv")] == ["a", "b"]

    shutil.rmtree(inbox / "b")

    def reuse():  # once this run has judged "c", the name "a" is deleted and made again
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(rows_csv(in_tmp / "line.csv")) < 3:
            time.sleep(0.05)
        shutil.rmtree(inbox / "a")
        shutil.copytree(part(rendered, 2), inbox / "a")

    shutil.copytree(part(rendered, 3), inbox / "c")
    th = _later(reuse)
    guard = threading.Timer(90, lambda: os.kill(os.getpid(), signal.SIGINT))  # never hang: the watch exits 130
    guard.start()
    try:
        assert cli_main(_watch(tiny_bundle, "--max-parts", "2")) == 0
    finally:
        guard.cancel()
    th.join()
    rows = rows_csv(in_tmp / "line.csv")
    assert [Path(r["part"]).name for r in rows] == ["a", "b", "c", "a"]
    assert list(csv.reader(open(in_tmp / "line.csv")))[0][0] == "part"  # one header


def test_watch_refuses_an_unfinished_last_row(tiny_bundle, rendered, in_tmp, capsys):  # noqa: F811
    (in_tmp / "inbox").mkdir()
    shutil.copytree(part(rendered), in_tmp / "inbox" / "a")
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1")) == 0
    with open(in_tmp / "line.csv", "a") as fh:
        fh.write("inbox/b,pa")
    before = (in_tmp / "line.csv").read_bytes()
    capsys.readouterr()
    assert cli_main(_watch(tiny_bundle, "--max-parts", "1")) == 2
    assert "last row is incomplete" in capsys.readouterr().err
    assert (in_tmp / "line.csv").read_bytes() == before


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_watch_stopped_by_a_signal_keeps_every_row(tiny_bundle, rendered, in_tmp, sig, code):  # noqa: F811
    (in_tmp / "inbox").mkdir()
    shutil.copytree(part(rendered), in_tmp / "inbox" / "a")
    proc = subprocess.Popen([sys.executable, "-m", "vitinspect", *_watch(tiny_bundle)], cwd=in_tmp, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (in_tmp / "line.csv").exists():
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2, err  # "watching ..." and "watch stopped"
    assert [Path(r["part"]).name for r in rows_csv(in_tmp / "line.csv")] == ["a"]


def test_broken_pipe_under_head_is_quiet(tiny_bundle, rendered, in_tmp):  # noqa: F811
    shutil.copytree(rendered, in_tmp / "lot")
    for i in range(4, 40):  # enough rows to outgrow the pipe's reader
        shutil.copytree(part(rendered), in_tmp / "lot" / f"part-{i:05d}")
    # head -n 0 reads nothing and exits: every row printed meets a closed pipe
    cmd = f"{sys.executable} -m vitinspect inspect lot --out r.csv --bundle {tiny_bundle} | head -n 0; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", cmd], cwd=in_tmp, env=_env(), capture_output=True, text=True)
    assert proc.returncode in (0, 141), proc.stderr
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr and "Error" not in proc.stderr, proc.stderr
    assert len(rows_csv(in_tmp / "r.csv")) == 40  # the results file is written whatever the terminal does

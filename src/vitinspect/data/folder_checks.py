"""What the ``validate`` stage checks of the user's folders beyond their headers, so that a bad part stops the run
before DVC reaches ``prepare`` (or ``lot``) and removes its outputs:

- every view and mask decoded once, by :func:`vitinspect.data.user_parts.read_one`, the function ``prepare``, ``lot``
  and ``pretrain`` decode them with (one rule: EXIF orientation applied, sizes compared once decoded), in chunks over
  ``data.num_proc`` processes, one chunk of parts per process in memory at a time (as ``prepare``); nothing is kept;
- the counts the later stages need, after the parts ``on_bad_part: skip`` leaves out: every class and the
  good class in the training split, val and test not empty, ``nsoartc.min_unit_space`` good training parts
  for the unit space, and :data:`MIN_TRAIN_PER_CLASS` training parts of each class for the peer's
  cross-validated calibration.
"""

from __future__ import annotations

from dataclasses import replace

from vitinspect.core.errors import VitinspectError
from vitinspect.data import arrow
from vitinspect.data.images import BadPart
from vitinspect.data.user_parts import FolderPart, Scan, check_splits, plan, read_one, scan

# The baseline stage's SVM calibrates its probabilities on stratified folds (vitinspect.evaluation.rt_peer.make_svm):
# a class with one training part is missing from the training side of one fold, and the fit fails.
MIN_TRAIN_PER_CLASS = 2


def _decode_chunk(job: tuple) -> list[dict]:
    """Decode a chunk of parts and drop the pixels; the parts skipped (``on_bad_part: skip``), else the first BadPart."""
    parts, size, on_bad_part = job
    skipped = []
    for part in parts:
        try:
            read_one(part, size)
        except BadPart as exc:
            if on_bad_part != "skip":
                raise
            skipped.append({"part": part.id, "reason": str(exc)})
    return skipped


def decode_all(parts: list[FolderPart], size: int, num_proc: int, on_bad_part: str = "error") -> list[dict]:
    """Decode every part once as ``prepare`` will; the parts left out with ``on_bad_part: skip`` (in part order),
    or the BadPart of the first unreadable part (in part order, whatever the number of processes)."""
    jobs = [(parts[a:b], size, on_bad_part) for a, b in arrow.chunk_ranges(len(parts), arrow.chunk_size(size))]
    return [x for skipped in arrow.imap_ordered(_decode_chunk, jobs, num_proc) for x in skipped]


def check_counts(parts: list[FolderPart], data, min_unit_space: int, left_out: int = 0) -> None:
    """The counts the later stages need of ``parts`` (split assigned), ``left_out`` parts already skipped."""
    after = f" (after on_bad_part: skip left out {left_out} parts)" if left_out else ""
    root, classes, good = data.folders.path, list(data.classes), data.good_class
    try:
        check_splits(parts, classes, good, root)
    except VitinspectError as exc:
        raise VitinspectError(f"{exc}{after}") from None
    train = {c: sum(p.split == "train" and p.label == c for p in parts) for c in classes}
    if train[good] < min_unit_space:
        raise VitinspectError(f"{root}: {train[good]} good ({good!r}) training parts{after}, fewer than "
                              f"nsoartc.min_unit_space={min_unit_space} for the unit space; bring more good "
                              "parts or lower nsoartc.min_unit_space")
    few = next((c for c in classes if train[c] < MIN_TRAIN_PER_CLASS), None)
    if few is not None:
        raise VitinspectError(f"{root}: class {few!r} has {train[few]} training part{after}; the baseline peer's "
                              f"cross-validated calibration needs at least {MIN_TRAIN_PER_CLASS} per class")


def checked_plan(data, min_unit_space: int, num_proc: int) -> Scan:
    """The folders data set of params' ``data`` section as ``prepare`` will make it: scanned, split, every part
    decoded, counted; ``skipped`` lists the parts left out at either step. VitinspectError otherwise."""
    found = plan(data)
    skipped = decode_all(found.parts, data.image_size, num_proc, data.folders.on_bad_part)
    gone = {x["part"] for x in skipped}
    kept = [p for p in found.parts if p.id not in gone]
    check_counts(kept, data, min_unit_space, len(found.skipped) + len(skipped))
    return replace(found, parts=kept, skipped=found.skipped + skipped)


def checked_lot(lot, data, num_proc: int) -> Scan:
    """The folder lot of params' ``lot`` section as the ``lot`` stage will read it, every part decoded."""
    found = scan(lot.folders.path, list(data.views), list(data.classes), on_bad_part=data.folders.on_bad_part, labelled=False)
    skipped = decode_all(found.parts, data.image_size, num_proc, data.folders.on_bad_part)
    gone = {x["part"] for x in skipped}
    kept = [p for p in found.parts if p.id not in gone]
    if not kept:
        raise VitinspectError(f"{lot.folders.path}: every part of the lot was skipped as bad (first: {skipped[0]['reason']})")
    return replace(found, parts=kept, skipped=found.skipped + skipped)

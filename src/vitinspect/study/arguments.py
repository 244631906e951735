"""What `study run` checks before it queues anything: its own numbers, and the params of every experiment.

Each experiment's params are params.yaml with the ``--set`` overrides and the plan's own applied by DVC's
own code (:func:`dvc.utils.hydra.apply_overrides`, what ``dvc exp run -S`` runs), then validated by the
params loader the ``validate`` stage uses: a value the pipeline would refuse is refused here, in one line,
before a single experiment is queued or params.yaml is touched.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

from vitinspect.config.params import load_params
from vitinspect.config.yaml_file import read_params_file
from vitinspect.core.errors import ParamsError, VitinspectError
from vitinspect.core.text import short
from vitinspect.study.plan import Experiment

MAX_SEEDS = 20  # baseline repetitions; each is a whole training run per judged setting (the full plan: 7 per seed)
MAX_TIMEOUT_S = 30 * 86_400


def check_numbers(seeds: int, timeout_s: float) -> None:
    if not 1 <= seeds <= MAX_SEEDS:
        raise VitinspectError(f"--seeds must be an integer from 1 to {MAX_SEEDS} (training seeds of the baseline; each "
                              f"is a whole training run for every judged setting), got {seeds}")
    if not (math.isfinite(timeout_s) and 1 <= timeout_s <= MAX_TIMEOUT_S):
        raise VitinspectError(f"--timeout must be a number of seconds from 1 to {MAX_TIMEOUT_S:,}, got {short(timeout_s)}")


def dvc_sets(overrides: dict) -> list[str]:
    """{key: value} -> the ``KEY=VALUE`` strings of ``dvc exp run -S``: strings as given (DVC parses them as
    YAML would), other values as JSON."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


def check_experiments(exps: list[Experiment], extra: dict, params: str | Path = "params.yaml") -> None:
    """Refuse, in one line, the first ``--set`` override or experiment whose params the pipeline would refuse."""
    base = read_params_file(params)
    if not isinstance(base, dict):
        load_params(params)  # raises its own one line
    for key, value in extra.items():
        if key.lstrip("+~") == key and not _has_key(base, key):
            raise VitinspectError(f"--set {short(f'{key}={value}')}: params.yaml has no key {short(key)} "
                                  "(the keys are in docs/pipeline.md)")
    with tempfile.TemporaryDirectory(prefix="vitinspect-study-") as tmp:
        _check_one(params, Path(tmp), extra, lambda msg: f"--set {_named(extra)}: {msg}" if extra else msg)
        seen = set()
        for e in exps:
            merged = {**extra, **e.overrides}
            key = tuple(dvc_sets(merged))
            if key not in seen:
                seen.add(key)
                _check_one(params, Path(tmp), merged, lambda msg, e=e: f"experiment {e.name} of the plan: {msg}")


def _has_key(data, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _named(extra: dict) -> str:
    return short(" ".join(dvc_sets(extra)))


def _check_one(params, tmp: Path, overrides: dict, say) -> None:
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    copy = tmp / "params.yaml"
    shutil.copyfile(params, copy)
    try:
        apply_overrides(copy, dvc_sets(overrides))
    except InvalidArgumentError as exc:
        cause = exc.__cause__
        line = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else str(exc)
        raise VitinspectError(say(f"DVC cannot apply it ({short(line)})")) from None
    try:
        load_params(copy)
    except ParamsError as exc:
        raise VitinspectError(say(str(exc))) from None
    p = read_params_file(copy)
    for key in ("data", "lot"):  # dvc.yaml names both folders as deps of validate, whatever data.source says
        folder = str(((p.get(key) or {}).get("folders") or {}).get("path", ""))
        if folder and not Path(folder).is_dir():
            raise VitinspectError(say(f"{key}.folders.path {short(folder)} is not a folder (dvc.yaml depends on it "
                                      f"even with data.source render)"))

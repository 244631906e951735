"""params.yaml: defaults validate; every bad value fails with one line naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vitinspect.params import ParamsError, defaults_dict, load_params, params_from_dict

ROOT = Path(__file__).resolve().parents[1]
CASES = yaml.safe_load((Path(__file__).parent / "bad_params.yaml").read_text())


def with_value(key: str, value) -> dict:
    d = copy.deepcopy(defaults_dict())
    *parents, leaf = key.split(".")
    node = d
    for k in parents:
        node = node[k]
    if value == "~delete":
        del node[leaf]
    else:
        node[leaf] = value
    return d


def test_checked_in_params_equal_the_schema_defaults():
    assert yaml.safe_load((ROOT / "params.yaml").read_text()) == defaults_dict()
    load_params(ROOT / "params.yaml")


@pytest.mark.parametrize("key,value,fragment", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_bad_value_names_the_key(key, value, fragment):
    with pytest.raises(ParamsError) as err:
        params_from_dict(with_value(key, value))
    msg = str(err.value)
    assert fragment in msg
    assert msg.startswith("params.yaml: ")
    assert "\n" not in msg


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


@pytest.mark.parametrize("key,value", [("data.passed_ratio", 1.5), ("nsoartc.window", 4), ("data.views", ["center", "up"])])
def test_stage_exits_2_with_one_line_and_writes_nothing(tmp_path, key, value):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(with_value(key, value)))
    out, gallery = "parts", "samples.png"
    proc = subprocess.run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(params), "--out", str(out), "--gallery", str(gallery)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]

"""params.yaml: defaults validate; every bad value fails with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, TESTS, with_value
import yaml

from vitinspect.config.params import ParamsError, defaults_dict, load_params, params_from_dict

CASES = yaml.safe_load((TESTS / "bad_params.yaml").read_text())


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


def test_not_utf8_is_one_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_bytes(yaml.safe_dump(defaults_dict()).encode().replace(b"passed_ratio", b"passed_r\xe4tio"))
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xe4"):
        load_params(bad)


@pytest.mark.parametrize("text,key", [
    ("data:\n  seed: 0\n  seed: 1\n", "duplicate key data.seed (line 3)"),
    ("train:\n  epochs: 2\ndata:\n  seed: 0\ntrain:\n  epochs: 3\n", "duplicate key train (line 5)"),
])
def test_duplicate_keys_are_refused_by_name(tmp_path, text, key):
    # yaml.safe_load keeps the last one silently (and a duplicated section then "misses" keys); DVC refuses.
    bad = tmp_path / "params.yaml"
    bad.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(bad)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_alias_bomb_is_refused_at_once(tmp_path):
    import time

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 9)]
    d = defaults_dict()
    bad = tmp_path / "params.yaml"
    bad.write_text("\n".join(lines) + "\n" + yaml.safe_dump(d).replace("views:\n  - center\n  - left\n  - right", "views: *a8"))
    start = time.perf_counter()
    with pytest.raises(ParamsError, match="expands to more than 10,000 values"):
        load_params(bad)
    assert time.perf_counter() - start < 5  # 10^9 values when expanded: refused before building them


def test_huge_values_are_shown_bounded():
    from vitinspect.core.text import short

    assert len(short(list(range(10**6)))) <= 80
    assert len(short("x" * 10**6)) <= 80
    nested = [[["deep"] * 1000] * 1000] * 1000  # 10^9 leaves, shared: formatting it whole would hang
    with pytest.raises(ParamsError) as err:
        params_from_dict(with_value("data.views", nested))
    assert len(str(err.value)) < 200


def test_split_counts_are_what_prepare_makes(tiny_params):
    import numpy as np

    from vitinspect.data import layout, synthetic
    from vitinspect.config.params import split_counts

    cols = synthetic.generate(tiny_params.data)
    labels, splits = np.asarray(cols["label"]), np.asarray(cols["split"])
    expected = split_counts(tiny_params.data)
    for s, by_class in expected.items():
        for c, n in by_class.items():
            assert ((labels == c) & (splits == s)).sum() == n, (s, c)
    assert layout.class_counts(tiny_params.data.n_images, tiny_params.data.classes, tiny_params.data.passed_ratio) == {
        c: sum(expected[s][c] for s in expected) for c in tiny_params.data.classes}


def test_memory_check_uses_the_machine(monkeypatch):
    import vitinspect.config.params as params_module

    params_from_dict(defaults_dict())
    monkeypatch.setattr(params_module, "available_memory", lambda: 2**28)  # 256 MiB
    with pytest.raises(ParamsError, match="more than the 0.2 GiB here"):
        params_from_dict(defaults_dict())


def _dvc_yaml_keys() -> set[str]:
    """The params keys dvc.yaml names: each stage's params entries and the ${...} it interpolates."""
    import re

    text = (ROOT / "dvc.yaml").read_text()
    keys = set(re.findall(r"\$\{([a-z_.]+)\}", text))
    for stage in yaml.safe_load(text)["stages"].values():
        keys.update(k for k in stage.get("params", []) if isinstance(k, str))
    return keys


def test_the_required_keys_are_those_dvc_yaml_names():
    from vitinspect.config.params import TRACKED_KEYS

    assert TRACKED_KEYS == _dvc_yaml_keys()


def test_a_section_of_only_the_keys_a_user_needs_takes_the_defaults_for_the_rest():
    given = defaults_dict()
    given["data"]["folders"] = {"path": "myparts"}
    del given["data"]["seed"], given["data"]["split"], given["baseline"]["grid"]["gamma"], given["lot"]["seed"]
    p = params_from_dict(given)
    assert (p.data.folders.path, p.data.folders.layout, p.data.folders.on_bad_part) == ("myparts", "auto", "error")
    assert p.data.seed == 0 and p.data.split.train == 0.7 and p.baseline.grid.gamma == [0.01, 0.03, 0.1, 0.3] and p.lot.seed == 1000
    given["data"]["folders"]["layuot"] = "labels"  # unknown keys are still refused
    with pytest.raises(ParamsError, match="unknown key data.folders.layuot"):
        params_from_dict(given)
    del given["data"]["folders"]  # a mapping holding a key dvc.yaml interpolates
    with pytest.raises(ParamsError, match="missing key data.folders "):
        params_from_dict(given)

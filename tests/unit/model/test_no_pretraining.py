"""The pretrain stage's placeholders: the same bytes every time, no torch."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from vitinspect.model.no_pretraining import EMPTY_CURVE, NOTE, placeholder_figure, placeholder_note


def _png():
    buf = io.BytesIO()
    placeholder_figure().save(buf, format="PNG")
    return buf.getvalue()


def test_the_placeholders_are_constant():
    assert json.loads(placeholder_note()) == NOTE and placeholder_note().endswith("}\n")
    assert placeholder_note() == placeholder_note() and _png() == _png()
    assert placeholder_figure().size == (360, 24) and placeholder_figure().mode == "L"
    assert EMPTY_CURVE.splitlines() == ["step\treconstruction_loss"]


def test_making_them_imports_no_torch():
    code = "import sys, vitinspect.model.no_pretraining as m; m.placeholder_figure(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

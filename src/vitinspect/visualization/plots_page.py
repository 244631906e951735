"""The HTML template for an offline `dvc plots show` page: vega, vega-lite and vega-embed inlined.

DVC's own page loads these scripts from a CDN, which is unreachable offline; a template that links
local copies by a relative path works only where that path resolves. Inlined scripts make the page
self-contained: it renders wherever it is written or copied (`make plots PLOTS_OUT=<dir>`).

    python -m vitinspect.visualization.plots_page --vega .vega/node_modules --out .vega/offline.html
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vitinspect.core.errors import VitinspectError
from vitinspect.core.runtime import run_stage
from vitinspect.core.storage import write_text

SCRIPTS = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")
# dvc-render fills the placeholders by plain replacement (not str.format): braces need no escaping.
SKELETON = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
@SCRIPTS@
    <style>
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def inline_script(js: str) -> str:
    """A <script> element holding ``js``; a literal '</script' inside it would end the element early."""
    return "<script>\n" + re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE) + "\n</script>"


def build_template(vega_modules: Path) -> str:
    """The template text, with ``{plot_divs}`` and ``{refresh_tag}`` for DVC to fill."""
    parts = []
    for rel in SCRIPTS:
        path = vega_modules / rel
        if not path.is_file():
            raise VitinspectError(f"{path}: missing; run `make vega` (npm) first")
        parts.append(inline_script(path.read_text(encoding="utf-8")))
    return SKELETON.replace("@SCRIPTS@", "\n".join(parts))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vega", default=".vega/node_modules", help="node_modules holding vega, vega-lite, vega-embed")
    ap.add_argument("--out", default=".vega/offline.html")
    args = ap.parse_args(argv)
    write_text(args.out, build_template(Path(args.vega)))


if __name__ == "__main__":
    run_stage(main, sys.argv[1:])

"""Stage `validate`: check the whole params.yaml before any other stage runs.

DVC deletes a stage's outputs before it runs the stage, so a stage that refuses bad params has
already lost them. This stage runs first (every other stage depends on its output) and has nothing
to lose: its output is persisted and holds no param value, so its bytes stay the same while params
stay valid and it never makes another stage rerun. It imports no torch or transformers: a bad
params.yaml is refused in about a second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vitinspect import cli
from vitinspect.params import load_params
from vitinspect.storage import write_text

VALID = json.dumps({"params": "valid"}) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", required=True, type=cli.output_path, help="a small file whose bytes never change (the others' dependency)")
    args = ap.parse_args(argv)

    load_params(args.params)
    out = Path(args.out)
    if not (out.is_file() and out.read_text() == VALID):
        write_text(out, VALID)
    print(f"validate: {args.params} is valid")


if __name__ == "__main__":
    cli.run_stage(main)

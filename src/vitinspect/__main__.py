"""`python -m vitinspect`: the same command as the `vitinspect` console script (vitinspect.app.command)."""

import sys

from vitinspect.app.command import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m vitinspect.review`: the pull-request report (vitinspect.review.pr_report)."""

import sys

from vitinspect.core.runtime import run_stage
from vitinspect.review.pr_report import main

run_stage(main, sys.argv[1:])

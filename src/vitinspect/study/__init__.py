"""`make study`: the source's findings as `dvc exp` runs, and reports/study.md with their numbers.

One module per job: ``plan`` (which experiments), ``claims`` (the source's claims, as data, and the verdict
sentence built from them), ``runs`` (queue them, collect what each measured),
``findings`` (one function per finding), ``paired`` (F6's ViT-against-peer arithmetic), ``pretrained``
(the pretrained-start sections), ``renderers`` (the findings on another renderer's parts, beside the 2-D
ones), ``report`` (the markdown and its figures); ``python -m
vitinspect.study run|report`` is ``__main__``.
"""

from vitinspect.study.claims import CLAIMS, Claim, compare, verdict
from vitinspect.study.findings import FINDINGS, Study, f6_answer, spread
from vitinspect.study.paired import paired_accuracy
from vitinspect.study.plan import PREFIX, SETTINGS, Experiment, plan, pretrain_plan
from vitinspect.study.pretrained import PT_BEGIN, PT_END, Runs, pretrained_sections
from vitinspect.study.report import build_report, splice_marked, splice_section, write_report
from vitinspect.study.runs import collect, figures_of, pretrained_figures_of, run_plan

__all__ = ["CLAIMS", "Claim", "compare", "verdict", "FINDINGS", "PREFIX", "PT_BEGIN", "PT_END", "SETTINGS", "Experiment", "Runs", "Study", "build_report", "collect",
           "f6_answer", "figures_of", "paired_accuracy", "plan", "pretrain_plan", "pretrained_figures_of",
           "pretrained_sections", "run_plan", "splice_marked", "splice_section", "spread", "write_report"]

"""`make study`: the source's findings as `dvc exp` runs, and reports/study.md with their numbers.

One module per job: ``plan`` (which experiments), ``claims`` (the source's claims, as data, and the verdict
sentence built from them), ``runs`` (queue them, collect what each measured),
``findings`` (one function per finding), ``paired`` (F6's ViT-against-peer arithmetic), ``pretrained``
(the pretrained-start sections), ``renderers`` (the findings on another renderer's parts, beside the 2-D
ones), ``report`` (the markdown and its figures); ``python -m
vitinspect.study run|report`` is ``__main__``.
"""

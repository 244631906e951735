"""The pull-request comment made from ``reports/pr.md`` (``python -m vitinspect.review --comment``).

.github/workflows/pr-comment.yml posts it: the report behind a hidden marker that finds the comment again
on the next push, its images linked by absolute URL, cut to fit GitHub's limit. The report itself is
:mod:`vitinspect.review.pr_report`'s.
"""

from __future__ import annotations

import re

# The first line of the one comment per pull request; pr-comment.yml finds the comment by it.
COMMENT_MARKER = "<!-- vitinspect-pr-report -->"
# GitHub refuses a comment over 65,536 characters; keep room for the marker and the footer.
COMMENT_LIMIT = 60_000
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def comment_body(report_md: str, image_url_base: str | None, head_sha: str | None = None,
                 run_url: str | None = None, limit: int = COMMENT_LIMIT) -> str:
    """The report as a pull-request comment: marker first, images by absolute URL, a footer.

    A relative image link (``![x](pr_confusion.png)``) does not render in a comment: it becomes
    ``<image_url_base>/pr_confusion.png``, or a pointer to the run's artifact when there is no
    base. A report longer than ``limit`` is cut at a line, open ``<details>`` blocks are closed,
    and the comment says so.
    """
    def link(m: re.Match) -> str:
        alt, target = m.group(1), m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # already absolute
            return m.group(0)
        name = target.rsplit("/", 1)[-1]
        if image_url_base:
            return f"![{alt}]({image_url_base.rstrip('/')}/{name})"
        return f"*{alt}: `{name}` in the workflow run's artifact*"

    body = _IMAGE.sub(link, report_md.strip())
    if len(body) > limit:
        body = body[:limit].rsplit("\n", 1)[0]
        body += "\n" + "</details>\n" * max(0, body.count("<details>") - body.count("</details>"))
        body += "\n*Report cut to fit a comment: the whole `reports/pr.md` is in the workflow run's artifact.*"
    footer = []
    if head_sha:
        footer.append(f"commit {head_sha[:12]}")
    if run_url:
        footer.append(f"[workflow run and artifact]({run_url})")
    tail = ["", "---", f"<sub>Updated on each push: {' · '.join(footer)}</sub>"] if footer else []
    return "\n".join([COMMENT_MARKER, body, *tail]) + "\n"

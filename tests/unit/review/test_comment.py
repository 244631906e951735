"""The pull-request comment: `python -m vitinspect.review --comment` as pr-metrics.yml runs it, on a two-commit repo."""

from __future__ import annotations


import pytest

from conftest import ROOT
from vitinspect.review.pr_comment import COMMENT_MARKER, comment_body

SHA = "0123456789abcdef0123456789abcdef01234567"
IMAGE_BASE = f"https://raw.githubusercontent.com/acme/vitinspect/pr-reports/pr-7/{SHA}"
WORKFLOWS = ROOT / ".github" / "workflows"


# ---- comment_body (pure) -------------------------------------------------------------------------

def test_comment_body_links_images_absolutely_and_starts_with_the_marker():
    report = "# r\n\n![base vs workspace](pr_confusion.png)\n![logo](https://example.org/a.png)\n"
    body = comment_body(report, IMAGE_BASE + "/", head_sha=SHA, run_url="https://github.com/acme/vitinspect/actions/runs/9")
    assert body.splitlines()[0] == COMMENT_MARKER
    assert f"![base vs workspace]({IMAGE_BASE}/pr_confusion.png)" in body
    assert "![logo](https://example.org/a.png)" in body  # absolute links stay
    assert "](pr_confusion.png)" not in body
    assert f"commit {SHA[:12]}" in body and "(https://github.com/acme/vitinspect/actions/runs/9)" in body
    # Without a place to publish images, the comment points to the artifact instead of a broken image.
    bare = comment_body(report, None)
    assert "![base vs workspace]" not in bare and "`pr_confusion.png` in the workflow run's artifact" in bare


def test_comment_body_is_cut_to_fit_a_comment_and_closes_details():
    rows = "\n".join(f"| m{i} | {i} |" for i in range(5000))
    report = f"# r\n\n## Verdict\n\n- ok\n\n<details><summary>All metrics</summary>\n\n{rows}\n\n</details>\n"
    body = comment_body(report, IMAGE_BASE, limit=2000)
    assert len(body) < 2300
    assert body.count("<details>") == body.count("</details>") == 1
    assert "Report cut to fit a comment" in body and "- ok" in body


def test_an_image_url_that_is_not_https_is_one_clear_error(in_tmp):
    from vitinspect.core.errors import VitinspectError
    from vitinspect.review.pr_report import main

    with pytest.raises(VitinspectError, match=r"--image-url-base must be an https:// URL \(got 'http://x'\)"):
        main(["--base", "main", "--comment", "c.md", "--image-url-base", "http://x"])
    assert not list(in_tmp.iterdir())  # nothing written


# ---- the workflow's own step, on a two-commit repository ------------------------------------------



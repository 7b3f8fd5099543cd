"""report.html in a real browser: the first screen at 1280x800, print, PDF, nothing loaded from the network.

Drives the Debian Chromium (never a downloaded browser) through Playwright, as tests/test_browser.py
does, on the session's demo run (``PLAYBOOK_BROWSER_DEMO_RUN`` reuses a finished run folder while
working on these tests). The first screen's screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import browser_lab
import pytest

from helpers.core.artifacts import Run
from tests.conftest import run_cli

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VIEWPORT = {"width": 1280, "height": 800}
FIRST_SCREEN = {"go/no-go verdict": "#pb-verdict .pb-big", "KPI scoreboard figure": "#pb-scoreboard svg",
                "most severe data issues": "#pb-issues li", "readiness score": "#pb-readiness .pb-big",
                "next actions": "#pb-actions li"}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch, pointed at the system Chromium (skips when it is absent)."""
    return {**browser_type_launch_args, "executable_path": browser_lab.require_chromium(),
            "args": browser_lab.CHROMIUM_FLAGS, "headless": True}


@pytest.fixture(scope="module")
def demo_report(request) -> Path:
    browser_lab.require_chromium()  # skip before the (expensive) demo run
    reuse = os.environ.get("PLAYBOOK_BROWSER_DEMO_RUN")
    return (Path(reuse) if reuse else request.getfixturevalue("demo_run").path) / "report.html"


@pytest.fixture
def report_page(browser, demo_report):
    """The demo report opened at 1280x800, with every request the page makes logged."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(demo_report.resolve().as_uri(), wait_until="load")
    page.requests = requests
    yield page
    context.close()


def test_first_screen_shows_everything_without_scrolling(report_page, demo_report):
    page = report_page
    for what, selector in FIRST_SCREEN.items():
        element = page.locator(selector).first
        assert element.is_visible(), what
        box = element.bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, what
        assert box["x"] + box["width"] <= VIEWPORT["width"] and box["y"] + box["height"] <= VIEWPORT["height"], \
            f"{what} is not on the first screen: {box}"
    assert page.locator("#pb-verdict .pb-big").inner_text() in ("Go", "No-go", "Hold: a simple rule may do")
    assert page.locator("#pb-scoreboard svg text", has_text="target").count() >= 3  # one target line per KPI
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]  # no sideways scrolling
    shot = browser_lab.screenshot(page, "report-first-screen")
    assert shot.stat().st_size > 10_000
    assert page.evaluate("window.scrollY") == 0
    # offline: the page loads itself and nothing else (figures are data URIs)
    assert [u for u in page.requests if not u.startswith("data:")] == [demo_report.resolve().as_uri()]


def test_contents_links_and_collapsed_details(report_page):
    page = report_page
    links = page.locator("nav.pb-toc a")
    assert links.count() == 7
    page.locator("nav.pb-toc a", has_text="4. Model development").click()
    assert page.locator("#step-4 h2").bounding_box()["y"] < VIEWPORT["height"] / 2  # jumped to it
    leaderboard = page.locator("details", has_text="Leaderboard, tuning and sampling")
    assert not leaderboard.locator("table").first.is_visible()  # collapsed until opened
    leaderboard.locator("summary").click()
    assert leaderboard.locator("table").first.is_visible()


def test_print_shows_every_detail_and_hides_the_navigation(report_page):
    page = report_page
    page.emulate_media(media="print")
    assert not page.locator("nav.pb-toc").is_visible()
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")  # what Print (and --pdf) fire
    assert page.evaluate("[...document.querySelectorAll('details')].every(d => d.open)")


def test_the_pdf_command_prints_the_report(demo_report, tmp_path):
    run_copy = tmp_path / "run"
    shutil.copytree(demo_report.parent, run_copy, ignore=shutil.ignore_patterns("*.parquet", "models"))
    done = run_cli("report", str(run_copy), "--pdf", env={"PLAYBOOK_CHROMIUM": browser_lab.require_chromium()})
    assert done.returncode == 0, done.stdout + done.stderr
    pdf = run_copy / "report.pdf"
    assert f"PDF: {pdf}" in done.stdout
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-"
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert pages > 1
    assert Run(run_copy).read_manifest()["report"]["pdf"] == "report.pdf"
    browser_lab.record(f"report.pdf of the demo: {pages} pages, {len(data) / 1e6:.2f} MB")

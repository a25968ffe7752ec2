"""The HTML report in real headless Chromium: it renders every plotly figure, logs no error and loads nothing.

`.ci/run` installs Chromium from Debian's packages; elsewhere these tests are skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hamtune.results.analysis import analyze
from hamtune.results.report import write_report
from hamtune.results.studyplots import PLOTS
from tests.support.browser import chromium, open_page
from tests.support.real_sweep import run_tiny_sweep
from tests.support.handmade import two_model_sweep

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs Chromium (apt-get install chromium)")

#: Each plotly figure's size once drawn, and how many SVG layers plotly drew into it.
FIGURES = """[...document.querySelectorAll('.js-plotly-plot')].map(figure => {
    const box = figure.getBoundingClientRect();
    return [box.width, box.height, figure.querySelectorAll('svg.main-svg').length];
})"""

#: Every figure plotly was asked to draw has its SVG.
DRAWN = "[...document.querySelectorAll('.plotly-graph-div')].every(figure => figure.querySelector('svg.main-svg'))"


def assert_renders_offline(report: Path, figures: int) -> None:
    page = open_page(report, FIGURES, ready=DRAWN)
    assert page.errors == []
    outside = [url[:80] for url in page.requests if url != report.resolve().as_uri() and not url.startswith("data:")]
    assert outside == []  # the page itself and its inlined images, nothing else
    assert len(page.value) == figures
    for width, height, layers in page.value:
        assert width > 100 and height > 100 and layers >= 1


def test_the_report_renders_in_chromium_with_no_errors_and_no_network(tmp_path: Path) -> None:
    report, *_ = write_report(analyze([str(two_model_sweep(tmp_path / "two"))]), tmp_path / "out")
    assert_renders_offline(report, len(PLOTS))


@pytest.mark.slow
@pytest.mark.ray
def test_the_report_of_a_real_sweep_renders_in_chromium(tmp_path_factory: pytest.TempPathFactory,
                                                       hamtune_cache: Path, tmp_path: Path) -> None:
    report, *_ = write_report(analyze([str(run_tiny_sweep(tmp_path_factory, hamtune_cache))]), tmp_path)
    assert_renders_offline(report, len(PLOTS) - 1)  # two trials: too few for importances


def test_the_browser_check_sees_a_network_load_and_a_console_error(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<script src='https://hamtune.invalid/x.js'></script><script>console.error('boom')</script>")
    record = open_page(page, "1")
    assert "https://hamtune.invalid/x.js" in record.requests  # .invalid never resolves: nothing leaves
    assert "boom" in record.errors and any(error.startswith("load failed") for error in record.errors)

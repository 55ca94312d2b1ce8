"""What a learner sees: 01_data and 05_eval run in JupyterLab, driven by a real headless Chromium (Playwright).

One JupyterLab and one browser for the module (scripts/browser_check.py does the driving): Run > Run All Cells on
parameterized copies (SmolLM2, the local ECQA folder, 12 train questions; 05 on the committed records), then the
asserts below on what the page shows. Skipped when chromium, playwright or jupyterlab is missing, unless
BROWSER_TEST_REQUIRED=1 (set by .ci/run, which installs Debian's chromium), where a missing piece fails.
Screenshots go to $BROWSER_SCREENSHOTS, or a temporary folder (`make screenshots` refreshes assets/screenshots).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def _browser_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("browser_check", REPO / "scripts" / "browser_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


bc = _browser_check()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lacks = bc.missing()
    if lacks:
        message = "browser test needs " + "; ".join(lacks)
        if os.environ.get("BROWSER_TEST_REQUIRED") == "1":
            pytest.fail(message + " (BROWSER_TEST_REQUIRED=1)")
        pytest.skip(message)
    out = Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    return {run.name: run for run in bc.check(out)}


def _finished(run: object) -> None:
    """Skip a check of what a notebook shows when it stopped early: test_run_all_... already fails for that."""
    if run.errors or run.unexecuted:
        pytest.skip(f"{run.name} did not run to the end (see test_run_all_executes_every_cell_without_error)")


@pytest.mark.parametrize("name", ["01_data", "05_eval"])
def test_run_all_executes_every_cell_without_error(runs: dict, name: str) -> None:
    run = runs[name]
    assert not run.errors, f"{name} shows an error in the browser:\n" + "\n".join(run.errors)
    assert run.code_cells and not run.unexecuted, (
        f"{name}: {run.unexecuted} of {run.code_cells} code cells did not run within the limit ({run.seconds:.0f} s)"
    )


@pytest.mark.parametrize("name", ["01_data", "05_eval"])
def test_no_warning_boxes(runs: dict, name: str) -> None:
    """Stderr output is a pink box in JupyterLab and Colab; learners read it as something gone wrong."""
    assert not runs[name].stderr, f"{name} shows {len(runs[name].stderr)} stderr box(es):\n" + "\n---\n".join(
        runs[name].stderr
    )


@pytest.mark.parametrize(
    ("name", "classes"), [("01_data", ["widget-slider"]), ("05_eval", ["widget-slider", "widget-dropdown"])]
)
def test_widgets_render_as_widgets(runs: dict, name: str, classes: list[str]) -> None:
    run = runs[name]
    _finished(run)
    assert not run.loading, f"{name}: {run.loading} widget(s) still say 'Loading widget...'"
    assert not run.text_reprs, f"{name}: widgets shown as text, e.g. {run.text_reprs[0]!r}"
    for cls in ["jupyter-widgets", *classes]:
        assert run.widgets.get(cls), f"{name}: no .{cls} in any output ({run.widgets})"


def test_record_browser_slider_shows_the_next_record(runs: dict) -> None:
    _finished(runs["01_data"])
    seen = runs["01_data"].interaction
    assert seen, "01_data: no record browser (an output with a slider) was found"
    assert seen["after"] != seen["before"], "moving the record slider did not change the record shown"
    assert re.fullmatch(r"2 of \d+", seen["where"].strip()), f"the slider's position reads {seen['where']!r}"


def test_cot_inspector_filter_changes_the_matches(runs: dict) -> None:
    _finished(runs["05_eval"])
    seen = runs["05_eval"].interaction
    assert seen, "05_eval: no CoT inspector (an output saying 'question(s) match') was found"
    assert seen["after"] != seen["before"], f"changing the filter left {seen['before']!r} unchanged"
    assert re.match(r"\d+ question\(s\) match", seen["after"]), seen["after"]


@pytest.mark.parametrize(
    ("name", "stems"),
    [
        ("01_data", {"01-record-browser", "01-length-histograms", "01-counts"}),
        ("05_eval", {"05-settings-form", "05-accuracy-chart", "05-results-table", "05-cot-inspector"}),
    ],
)
def test_screenshots_saved(runs: dict, name: str, stems: set[str]) -> None:
    run = runs[name]
    _finished(run)
    assert not run.missing_shots, f"{name}: nothing to photograph for {run.missing_shots}"
    saved = {Path(p).stem for p in run.screenshots}
    assert stems <= saved, f"{name}: missing screenshots {stems - saved}"
    for path in run.screenshots:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path

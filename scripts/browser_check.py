"""What a learner sees: 01_data and 05_eval run in JupyterLab in a real (headless) Chromium, with screenshots.

    python scripts/browser_check.py                      # screenshots into assets/screenshots
    python scripts/browser_check.py --out /tmp/shots     # anywhere else

Needs Debian's chromium (``apt-get install chromium``; Playwright cannot download its own browser here),
``playwright`` and ``jupyterlab`` (the dev extra). Copies of the two notebooks go to a temporary folder; JupyterLab
serves it on 127.0.0.1 with a random token, its kernels editing each settings form for a CPU run as a learner
would (``$MCQ_FORM_EDITS``: the embedded SmolLM2-135M, the local ECQA folder, a tiny train sample; 05 on the
committed records in assets/results, so no model is evaluated) under a temporary root (``$MCQ_ROOT``).
Playwright opens each notebook, runs Run > Run All Cells, waits until every cell has run, and collects what a
learner would notice: error outputs, stderr ("pink") boxes, widgets that did not render
("Loading widget..." or a text repr such as ``VBox(children=...)``). It then moves the record browser's slider
(01) and the CoT inspector's filter (05) and reads the change, and saves cropped PNGs. tests/test_browser.py
asserts on the returned report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DATA = Path(os.environ.get("ECQA_DATA", REPO.parent / "shared" / "data" / "ecqa"))

# What each step's settings form is edited to (helpers.widgets.headless_edits; see scripts/run_pipeline.py's presets).
FORM_EDITS: dict[str, dict[str, Any]] = {
    "data": {"model": "smollm2-135m", "data_source": str(DATA.resolve()), "train_sample_size": 12},
    "eval": {"results_from": str(REPO / "assets" / "results")},
}
# A widget shown as its Python repr instead of rendered: e.g. "VBox(children=(IntSlider(...".
TEXT_REPR = re.compile(r"^\s*\w*(Box|Slider|Dropdown|Form|HTML|Accordion|Tab)\(\s*children=|^\s*\w+\(children=")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+(Error|Exception)\b", re.M)
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
WIDGET = ".jp-OutputArea-output:has(.jupyter-widgets)"  # a widget view's output (it has no data-mime-type)
# JupyterLab user settings for the run: every cell in the DOM (no windowing), no news/update toasts.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@dataclass
class NotebookRun:
    """What one notebook showed after Run All."""

    name: str
    seconds: float = 0.0
    code_cells: int = 0
    unexecuted: int = 0
    errors: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    widgets: dict[str, int] = field(default_factory=dict)  # DOM class -> count
    loading: int = 0  # "Loading widget..." placeholders left, or "Error displaying widget"
    text_reprs: list[str] = field(default_factory=list)
    interaction: dict[str, str] = field(default_factory=dict)  # before / after text of the changed widget
    screenshots: list[str] = field(default_factory=list)
    missing_shots: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- missing pieces
def missing() -> list[str]:
    """What this machine lacks for the browser check ([] when it can run)."""
    import importlib.util

    lacks = []
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        lacks.append(f"chromium at {CHROMIUM} (`apt-get install -y chromium`, or set CHROMIUM=path)")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("papermill", "papermill")):
        if importlib.util.find_spec(module) is None:
            lacks.append(f"the Python package {package} (`pip install -e '.[dev]'`)")
    if not DATA.is_dir():
        lacks.append(f"the ECQA data at {DATA} (set ECQA_DATA)")
    return lacks


# ---------------------------------------------------------------- notebooks and server
def prepare(workdir: Path, names: list[str]) -> None:
    """Copies of the notebooks in ``workdir/notebooks`` (artifacts go under ``workdir/artifacts``, `jupyter_lab`)."""
    import shutil

    (workdir / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(REPO / "notebooks" / f"{name}.ipynb", workdir / "notebooks" / f"{name}.ipynb")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root: Path, timeout: float = 90) -> Iterator[str]:
    """JupyterLab serving ``root`` on 127.0.0.1 (random port and token); yields its base URL with ``?token=``."""
    port, token = _free_port(), secrets.token_hex(16)
    home = root / ".jupyter-home"
    for rel, value in LAB_SETTINGS.items():
        path = home / "lab-settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),  # no user kernelspec overrides this Python's python3
        "ECQA_DATA": str(DATA.resolve()),
        "MCQ_FORM_EDITS": json.dumps(FORM_EDITS),  # read by helpers.widgets: the forms edited as a learner would
        "MCQ_ROOT": str(root / "artifacts"),  # read by helpers.colab: the default root, where 01 saves its choices
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--LabApp.news_url=",
        "--ServerApp.log_level=WARN",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = open(home / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = (home / "server.log").read_text()[-2000:]
                raise RuntimeError(f"JupyterLab exited ({proc.returncode}): {tail}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"JupyterLab did not answer on {base} within {timeout:.0f} s") from None
                time.sleep(0.5)
        yield f"{base}?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ---------------------------------------------------------------- driving the browser
def open_and_run_all(page: Any, base: str, name: str, timeout: float) -> NotebookRun:
    """Open a notebook, wait for its kernel, Run > Run All Cells, wait until every code cell ran (or one failed)."""
    url, query = base.split("?", 1)
    page.goto(f"{url}/lab/tree/notebooks/{name}.ipynb?{query}")
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    notebook.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    indicator = notebook.locator(".jp-Notebook-ExecutionIndicator")
    # the toolbar's indicator says idle before a kernel is attached: wait for the status bar's "<kernel> | Idle"
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\(ipykernel\) \| Idle")).wait_for(timeout=90_000)
    run = NotebookRun(name)
    log(f"{name}: kernel idle, Run All")
    start = time.monotonic()
    _run_all(page)
    prompts = notebook.locator(".jp-CodeCell .jp-InputPrompt")
    retried = False
    while True:
        time.sleep(1.0)
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if not retried and time.monotonic() - start > 20 and all(t == "[ ]:" for t in texts):
            log(f"{name}: nothing started 20 s after Run All; once more")  # a click lost while the kernel attached
            _run_all(page)
            retried = True
        idle = indicator.get_attribute("data-status") == "idle"
        done = all(re.fullmatch(r"\[\d+\]:", t) for t in texts)
        if idle and (done or _errors(notebook)) and not any("*" in t for t in texts):
            break
        if time.monotonic() - start > timeout:
            break
    run.seconds = time.monotonic() - start
    log(f"{name}: stopped after {run.seconds:.0f} s, prompts {texts}")
    run.code_cells = len(texts)
    run.unexecuted = sum(not re.fullmatch(r"\[\d+\]:", t) for t in texts)
    # widgets render after the kernel is idle: give the placeholders a moment to go
    with contextlib.suppress(Exception):
        page.wait_for_function("() => !document.body.innerText.includes('Loading widget')", timeout=20_000)
    run.errors = [t[-1500:] for t in _errors(notebook)]
    run.stderr = [t[:600] for t in notebook.locator(STDERR).all_inner_texts() if not TRACEBACK.search(t)]
    for cls in ("jupyter-widgets", "widget-slider", "widget-dropdown", "widget-html", "widget-vbox"):
        run.widgets[cls] = notebook.locator(f".jp-OutputArea-output .{cls}").count()
    outputs = "\n".join(notebook.locator(".jp-OutputArea").all_inner_texts())
    run.loading = len(re.findall(r"Loading widget|Error displaying widget", outputs))
    plain = notebook.locator('.jp-OutputArea-output[data-mime-type="text/plain"]').all_inner_texts()
    run.text_reprs = [t[:200] for t in plain if TEXT_REPR.search(t)]
    return run


def _run_all(page: Any) -> None:
    """Run > Run All Cells, as a learner clicks it."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def _errors(notebook: Any) -> list[str]:
    """Error outputs: JupyterLab renders them with the stderr MIME type, so they are told apart by the traceback."""
    return [t for t in notebook.locator(STDERR).all_inner_texts() if TRACEBACK.search(t)]


def output_with(page: Any, text: str) -> Any:
    """The (first) widget output area of the visible notebook whose text contains ``text``."""
    return page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) {WIDGET}", has_text=text).first


def cell_with_source(page: Any, text: str | re.Pattern) -> Any:
    """The (first) code cell of the visible notebook whose source contains ``text``."""
    return page.locator(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell", has=page.locator(".jp-InputArea", has_text=text)
    ).first


def _shot(locator: Any, out: Path, name: str, run: NotebookRun, max_height: int = 1400) -> None:
    """A PNG cropped to one element (its top ``max_height`` px); a note in ``run.missing_shots`` when not shown.

    The notebook scrolls inside a panel, so an element taller than that panel would be cut by it: the viewport
    grows to fit the element for the shot, then goes back.
    """
    if not locator.count() or not locator.is_visible():
        run.missing_shots.append(name)
        return
    page = locator.page
    size = page.viewport_size
    height = int(locator.bounding_box()["height"])
    if height + 250 > size["height"]:
        page.set_viewport_size({"width": size["width"], "height": min(height, max_height) + 250})
    try:
        locator.scroll_into_view_if_needed()
        locator.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.mouse.move(0, 0)  # no hover highlight on tables
        box = locator.bounding_box()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.png"
        page.screenshot(
            path=str(path),
            animations="disabled",
            clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": min(box["height"], max_height)},
        )
        run.screenshots.append(str(path))
    finally:
        page.set_viewport_size(size)


def log(message: str) -> None:
    print(f"[browser {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _wait_changed(locator: Any, before: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        after = locator.inner_text()
        if after != before:
            return after
        time.sleep(0.25)
    return locator.inner_text()


def check_data(page: Any, base: str, out: Path, timeout: float) -> NotebookRun:
    """01_data: Run All, then move the record browser's slider one step and read the record pane again."""
    run = open_and_run_all(page, base, "01_data", timeout)
    browser = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) {WIDGET}", has=page.locator(".widget-slider")).first
    if browser.count():
        log("01_data: record browser")
        _shot(browser, out, "01-record-browser", run)
        pane = browser.locator(".widget-html").last  # the record itself; the one before it says "1 of N"
        before = pane.inner_text()
        handle = browser.locator(".widget-slider .noUi-handle, .widget-slider .ui-slider-handle").first
        handle.focus()
        handle.press("ArrowRight")  # a learner's keyboard step; the kernel re-renders the pane
        run.interaction = {
            "before": before,
            "after": _wait_changed(pane, before),
            "where": browser.locator(".widget-html").first.inner_text(),
        }
    _shot(
        cell_with_source(page, "length_histograms").locator(".jp-OutputArea-output img").first,
        out,
        "01-length-histograms",
        run,
    )
    _shot(cell_with_source(page, "display(counts)").locator(".jp-OutputArea-output").first, out, "01-counts", run)
    return run


def check_eval(page: Any, base: str, out: Path, timeout: float) -> NotebookRun:
    """05_eval on the committed records: Run All, screenshots, then change the CoT inspector's filter."""
    run = open_and_run_all(page, base, "05_eval", timeout)
    _shot(output_with(page, "hover a name"), out, "05-settings-form", run)
    chart = cell_with_source(page, re.compile(r"plots\.\w*chart\(")).locator(".jp-OutputArea-output img").first
    _shot(chart, out, "05-accuracy-chart", run)
    _shot(cell_with_source(page, "results_table").locator(".jp-OutputArea-output").first, out, "05-results-table", run)
    inspector = output_with(page, "question(s) match")
    if inspector.count():
        _shot(inspector, out, "05-cot-inspector", run)
        count = inspector.locator(".widget-html", has_text="question(s) match").first
        before = count.inner_text()
        select = inspector.locator(".widget-dropdown select").first
        options = select.locator("option").all_inner_texts()
        select.select_option(next(o for o in options if o != select.input_value()))
        run.interaction = {"before": before, "after": _wait_changed(count, before)}
        _shot(inspector, out, "05-cot-inspector-filtered", run)
    return run


def check(out: Path, names: tuple[str, ...] = ("01_data", "05_eval"), timeout: float = 150) -> list[NotebookRun]:
    """The whole check: temp copies, JupyterLab, Chromium; one `NotebookRun` per notebook."""
    from playwright.sync_api import sync_playwright

    lacks = missing()
    if lacks:
        raise RuntimeError("cannot run the browser check: missing " + "; ".join(lacks))
    checks = {"01_data": check_data, "05_eval": check_eval}
    with tempfile.TemporaryDirectory(prefix="browser-check-") as tmp:
        workdir = Path(tmp)
        prepare(workdir, list(names))
        with jupyter_lab(workdir) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                runs = []
                for name in names:
                    runs.append(checks[name](page, base, out, timeout))
                    page.goto("about:blank")
            finally:
                browser.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--only", nargs="*", choices=["01_data", "05_eval"], help="just these notebooks")
    args = parser.parse_args()
    start = time.monotonic()
    runs = check(args.out, tuple(args.only or ("01_data", "05_eval")))
    for run in runs:
        print(json.dumps({k: v for k, v in vars(run).items() if k != "interaction"}, indent=1))
        print("interaction changed:", run.interaction.get("before") != run.interaction.get("after"))
    print(f"browser check finished in {time.monotonic() - start:.0f} s; screenshots in {args.out}")
    bad = [r.name for r in runs if r.errors or r.unexecuted or r.loading or r.text_reprs]
    sys.exit(f"problems in {bad}" if bad else 0)


if __name__ == "__main__":
    main()

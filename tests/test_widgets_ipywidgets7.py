"""The widget tests again under Colab's ipywidgets 7.7.1; this environment has ipywidgets 8.

Colab ships ipywidgets 7.7.1 with its own front end, and the install keeps it (tests/test_colab_install.py).
A second, small environment holds only what ipywidgets 7 brings in Colab's versions (ipywidgets,
widgetsnbextension, ipython-genutils; tests/fixtures/colab-runtime.txt), installed with ``pip --target``
into ``.venv/colab-ipywidgets-7.7.1`` on first use and reused after. The widget tests then run in a subprocess with
that folder first on ``PYTHONPATH``, so everything else (IPython, traitlets, helpers) is this environment's.
The widget tests are every test file that imports ipywidgets or helpers.widgets (tests/test_widgets.py, ...).

ipywidgets 7 ignores keyword arguments it does not know (``W.Accordion(titles=...)`` builds an accordion with no
title) with only a DeprecationWarning from traitlets; the subprocess makes that warning an error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import extra_site, site_env

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "tests" / "fixtures" / "colab-runtime.txt"
PACKAGES = ("ipywidgets", "widgetsnbextension", "ipython-genutils")  # what ipywidgets 7 needs beyond 8's deps
UNKNOWN_KWARG = "error:Passing unrecognized arguments:DeprecationWarning"  # traitlets' message for such kwargs
USES_WIDGETS = re.compile(
    r"^\s*(import ipywidgets|from helpers import .*\bwidgets\b|from helpers\.widgets import)", re.MULTILINE
)


def widget_test_files() -> list[str]:
    files = [p for p in sorted((REPO / "tests").glob("test_*.py")) if p.name != Path(__file__).name]
    found = [f"tests/{p.name}" for p in files if USES_WIDGETS.search(p.read_text())]
    assert "tests/test_widgets.py" in found, f"no widget tests found: {found}"
    return found


def colab_versions() -> dict[str, str]:
    text = RUNTIME.read_text()
    found = {n: re.search(rf"^{re.escape(n)}==(\S+)$", text, re.MULTILINE | re.IGNORECASE) for n in PACKAGES}
    missing = [n for n, m in found.items() if m is None]
    assert not missing, f"{RUNTIME.name} lists no {missing}"
    return {n: m.group(1) for n, m in found.items() if m}


def colab_widgets_dir() -> Path:
    """The folder with Colab's ipywidgets 7 stack, made once per environment (needs PyPI the first time)."""
    versions = colab_versions()
    return extra_site(f"colab-ipywidgets-{versions['ipywidgets']}", [f"{n}=={v}" for n, v in versions.items()])


def test_widget_tests_pass_under_colabs_ipywidgets_7(request):
    expected = colab_versions()["ipywidgets"]
    site = colab_widgets_dir()
    args = ["-q", "-p", "no:cacheprovider", "-W", UNKNOWN_KWARG, *widget_test_files()]
    if markexpr := request.config.getoption("markexpr"):
        args += ["-m", markexpr]  # the same selection as this run (e.g. 'not slow')
    code = (
        "import sys, ipywidgets, pytest; print('ipywidgets', ipywidgets.__version__, ipywidgets.__file__); "
        f"sys.exit(pytest.main({args!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=site_env(site), capture_output=True, text=True, timeout=900
    )
    output = done.stdout + done.stderr
    assert done.stdout.startswith(f"ipywidgets {expected} {site}"), f"not ipywidgets {expected}:\n{output[-2000:]}"
    assert done.returncode == 0, f"{' '.join(widget_test_files())} fail under ipywidgets {expected}:\n{output[-6000:]}"

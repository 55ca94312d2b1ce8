"""The notebooks' Colab install, resolved by pip's own resolver for Colab as it is.

The install cell (``pip install -r requirements-colab.txt -e <clone>``, or the package with its ``colab``
extra, read from the notebooks) runs on a Colab runtime that already has hundreds of packages
(tests/fixtures/colab-runtime.txt, Colab's own ``pip freeze``). Nothing here can run Colab, so this test
recreates what pip sees there:

* the installed packages: an empty ``site-packages`` holding one ``*.dist-info`` per line of Colab's freeze,
  the only packages on ``sys.path`` of the pip process (``python -S``), so pip keeps what satisfies a
  requirement and replaces what does not, exactly as on Colab;
* the interpreter: ``--python-version 3.13 --implementation cp --abi cp313``, manylinux x86_64 platforms up to
  Colab's glibc 2.35, binary wheels only, and environment markers evaluated for Python 3.13 (pip evaluates
  markers for the interpreter it runs on, so a small shim swaps in Colab's marker environment).

pip runs with ``--dry-run --report``: it reads the metadata of the candidates it needs from PyPI and downloads
no wheel. A torch that satisfies every requirement is never fetched, so no CUDA wheel is either.
Needs PyPI: skipped with the reason when it cannot be reached, failed instead under ``MCQ_REQUIRE_PYPI=1`` (CI).
A few seconds (3 s here, no pip cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "tests" / "fixtures" / "colab-runtime.txt"
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")
GLIBC_MINOR = 35  # Colab: Ubuntu 22.04, glibc 2.35
PLATFORMS = [f"manylinux_2_{m}_x86_64" for m in range(GLIBC_MINOR, 16, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
PACKAGE = "llama32-mcq-cot-helpers"
KEPT = ("torch", "ipywidgets")  # Colab's CUDA torch, and the ipywidgets whose front end Colab ships
CUDA = re.compile(r"^(nvidia-|triton$|cuda-)")

# pip evaluates environment markers for the interpreter it runs on; this makes them Colab's Python 3.13.
SHIM = """
import sys
from pip._vendor.packaging import markers
_base = markers.default_environment
markers.default_environment = lambda: {**_base(), "python_version": "%(short)s", "python_full_version": "%(full)s",
    "implementation_version": "%(full)s", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
from pip._internal.cli.main import main
sys.exit(main())
"""


def colab_runtime() -> tuple[str, dict[str, str]]:
    """(Colab's Python version, {canonical name: version}) from the data file.

    ``name @ url`` lines (six CUDA/RAPIDS and Colab-internal packages) carry no version and are left out.
    """
    text = RUNTIME.read_text()
    python = re.search(r"^# python: (\d+\.\d+\.\d+)", text, re.M)
    assert python, f"{RUNTIME.name}: no '# python: X.Y.Z' header line"
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", text, re.M))
    return python.group(1), {canonicalize_name(n): v for n, v in pins.items()}


def fake_site(root: Path, pins: dict[str, str]) -> Path:
    """A ``site-packages`` with Colab's packages as metadata only, and pip itself (linked) to run from it."""
    site = root / "site-packages"
    for name, version in pins.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
    import pip

    (site / "pip").symlink_to(Path(pip.__file__).parent, target_is_directory=True)
    return site


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's pip settings (local mirrors, constraints) must not leak in: PyPI and the cert only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def install_commands() -> list[str]:
    """The pip install command of every notebook (the whole statement, continuation lines included)."""
    import nbformat

    found = []
    for path in sorted((REPO / "notebooks").glob("0*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            lines = cell.source.splitlines() if cell.cell_type == "code" else []
            for i, line in enumerate(lines):
                if re.search(r"\bpip\b.*\binstall\b", line):
                    statement, depth = [], 0
                    for more in lines[i:]:
                        statement.append(more.strip())
                        depth += sum(more.count(c) for c in "([{") - sum(more.count(c) for c in ")]}")
                        if depth <= 0:
                            break
                    found.append(" ".join(statement))
    return found


def install_arguments(wheel: Path) -> list[str]:
    """What the install cells install, the package being the wheel built from this checkout: the package with
    its ``colab`` extra (``pip install "llama32-mcq-cot-helpers[colab] @ git+..."``), or ``-r requirements-colab.txt``
    and the package (``pip install -r requirements-colab.txt -e <clone>``)."""
    commands = install_commands()
    if commands and all(f"{PACKAGE}[colab]" in c for c in commands):
        return [f"{wheel}[colab]"]
    assert commands and all("requirements-colab.txt" in c for c in commands), (
        f"the notebooks install something this test does not resolve; update install_arguments:\n{commands}"
    )
    return ["-r", str(REPO / "requirements-colab.txt"), str(wheel)]


def build_wheel(out: Path) -> Path:
    """The package as the install cell installs it (same name, version and requirements, extras included),
    built from a copy so that no build folder lands in the repository."""
    src = out / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=lambda folder, names: (
            [
                n
                for n in names
                if folder == str(REPO)
                and n not in ("pyproject.toml", "helpers", "requirements-colab.txt", "requirements")
            ]
            + ["__pycache__"]
        ),
    )
    no_isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # else fetch it
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--index-url",
        INDEX,
        *no_isolation,
        "-w",
        str(out),
        str(src),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, f"building the package's wheel failed:\n{done.stderr[-3000:]}"
    (wheel,) = out.glob("*.whl")
    return wheel


def _pypi_reachable() -> str | None:
    try:
        urllib.request.urlopen(f"{INDEX.rstrip('/')}/pip/", timeout=15).close()
    except OSError as e:
        return f"{INDEX} unreachable ({e}): the Colab install resolve needs PyPI"
    return None


@pytest.fixture(scope="module")
def resolve(tmp_path_factory) -> dict[str, Any]:
    """pip's install report for the install cell on Colab, plus Colab's pins and the wheel built."""
    if reason := _pypi_reachable():
        (pytest.fail if os.environ.get("MCQ_REQUIRE_PYPI") else pytest.skip)(reason)  # CI sets MCQ_REQUIRE_PYPI=1
    python, pins = colab_runtime()
    root = tmp_path_factory.mktemp("colab")
    site = fake_site(root, pins)
    (root / "wheel").mkdir()
    wheel = build_wheel(root / "wheel")
    (root / "shim.py").write_text(SHIM % {"short": ".".join(python.split(".")[:2]), "full": python})
    report = root / "report.json"
    short = "".join(python.split(".")[:2])
    cmd = [
        sys.executable,
        "-S",
        str(root / "shim.py"),
        "install",
        "--dry-run",
        "--quiet",
        "--report",
        str(report),
        "--index-url",
        INDEX,
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{short}",
        *[f"--platform={p}" for p in PLATFORMS],
        *install_arguments(wheel),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(PYTHONPATH=str(site)), timeout=600)
    assert done.returncode == 0, f"pip cannot install the notebooks' requirements on Colab:\n{done.stderr[-4000:]}"
    return {"report": json.loads(report.read_text()), "pins": pins, "python": python, "wheel": wheel}


def changes(report: dict[str, Any], pins: dict[str, str]) -> list[tuple[str, str | None, str]]:
    """(name, Colab's version or None, version installed) for every package the install adds or replaces."""
    out = []
    for item in report["install"]:
        name, version = canonicalize_name(item["metadata"]["name"]), item["metadata"]["version"]
        out.append((name, pins.get(name), version))
    return sorted(out)


def test_install_keeps_colabs_torch_and_ipywidgets_and_downloads_no_cuda(resolve):
    report, pins = resolve["report"], resolve["pins"]
    assert report["environment"]["python_version"] == resolve["python"].rsplit(".", 1)[0], report["environment"]
    changed = changes(report, pins)
    print(f"\nThe install cell on Colab (Python {resolve['python']}) changes {len(changed)} packages:")
    for name, old, new in changed:
        print(f"  {name:28} {'added' if old is None else old:>14} -> {new}")
    replaced = {name: (old, new) for name, old, new in changed if name in KEPT}
    assert not replaced, f"the install replaces what Colab ships (old, new): {replaced}"
    assert all(name in pins for name in KEPT), f"{RUNTIME.name} lists no {KEPT}"
    cuda = [name for name, _, _ in changed if CUDA.match(name)]
    assert not cuda, f"the install pulls CUDA wheels, so it would replace Colab's torch stack: {cuda}"


def test_every_package_installed_is_a_wheel_for_colabs_python(resolve):
    """Each wheel pip picked (all but our own) installs on CPython 3.13, manylinux x86_64."""
    major, minor = (int(x) for x in resolve["python"].split(".")[:2])
    accepted = {
        *cpython_tags((major, minor), [f"cp{major}{minor}"], PLATFORMS),
        *compatible_tags((major, minor), f"cp{major}{minor}", PLATFORMS),
    }
    bad = []
    for item in resolve["report"]["install"]:
        url = item["download_info"]["url"]
        if url.startswith("file:"):
            assert url.endswith(resolve["wheel"].name), f"an unexpected local file in the install: {url}"
            continue
        if not parse_wheel_filename(url.rsplit("/", 1)[-1].split("#")[0])[3] & accepted:
            bad.append(url.rsplit("/", 1)[-1])
    assert not bad, f"wheels not for CPython {resolve['python']} manylinux x86_64: {bad}"


def test_pins_are_what_the_tests_run_against():
    """Exact pins (pyproject.toml, requirements-colab.txt) name the versions the tests run: this environment's."""
    from importlib.metadata import PackageNotFoundError, version

    import tomllib

    lines = (REPO / "requirements-colab.txt").read_text().splitlines()
    lines += tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [
        r
        for r in (Requirement(x) for x in lines if x.strip() and not x.startswith("#"))
        if any(s.operator == "==" for s in r.specifier)
    ]
    assert pinned, "no exact pins found: update this test"

    wrong = {}
    for r in pinned:
        try:
            have: str | None = version(r.name)
        except PackageNotFoundError:
            have = None
        if have is None or not r.specifier.contains(have):
            wrong[r.name] = (str(r.specifier), have)
    assert not wrong, f"pinned versions the tests do not run (pin, installed here): {wrong}"


def test_every_notebook_installs_what_this_file_resolves():
    """Each notebook's setup cell has one install command, and they all install the same thing."""
    commands = install_commands()
    notebooks = sorted((REPO / "notebooks").glob("0*.ipynb"))
    assert len(commands) == len(notebooks), f"expected one pip install per notebook, found:\n{commands}"
    assert len({re.sub(r"\s+", " ", c) for c in commands}) == 1, f"the notebooks install different things:\n{commands}"
    install_arguments(Path("package.whl"))  # raises when the command is neither form


def test_the_install_cell_restarts_colab_once_for_what_it_replaced(resolve, tmp_path):
    """What pip replaces on Colab, against what Colab had loaded before the first cell
    (tests/fixtures/colab-preloaded.txt): the install cell's `restart_if_stale` restarts once (kills nothing here)."""
    from test_colab import colab_loaded

    from helpers import colab

    report, pins = resolve["report"], resolve["pins"]
    on_disk = {**pins, **{name: new for name, _old, new in changes(report, pins)}}
    loaded = colab_loaded()
    kills: list[int] = []
    stale = colab.restart_if_stale(
        loaded=loaded, on_disk=on_disk, colab=True, kill=lambda pid, sig: kills.append(sig), marker=tmp_path / "m"
    )
    replaced = sorted(name for name, old, _new in changes(report, pins) if old is not None and name in loaded)
    print(f"\nreplaced packages Colab had loaded: {replaced}")
    assert stale == replaced and "pyarrow" in stale, (stale, replaced)
    assert kills == [9]

"""What the notebooks' first cells need: a restart after the install when Colab had loaded an older version of a
package, the versions actually loaded, Google Drive mounted only when used, and the choices made once in 01_data
(model, data source, root, run size) saved under the root for the later notebooks.

    >>> restart_if_stale(loaded={"pyarrow": "18.1.0"}, on_disk={"pyarrow": "26.0.1"}, colab=False)
    loaded versions differ from the installed ones (pyarrow 18.1.0 -> 26.0.1): restart the runtime (Runtime > Restart)
    ['pyarrow']
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, metadata, packages_distributions, version
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

DRIVE = Path("/content/drive")
DRIVE_ROOT = DRIVE / "MyDrive" / "llama32-mcq-cot"  # the default root on Colab: artifacts survive a disconnect
ROOT_ENV = "MCQ_ROOT"  # a root chosen outside the notebooks (headless runs): the default root then
SERIES_FILE = "series.json"
SERIES_FIELDS = ("model", "data_source", "root", "run_size")  # chosen once, in 01_data
POINTER = Path.home() / ".cache" / "llama32-mcq-cot" / SERIES_FILE  # where the series went when not the default root
RESTART_MARKER = Path("/tmp/llama32-mcq-cot-restarted")  # a restart happens once per machine, never in a loop
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "pyarrow",
    "bitsandbytes",
    "liger-kernel",
    "ipywidgets",
)


def on_colab() -> bool:
    return "google.colab" in sys.modules


# ---------------------------------------------------------------- versions: loaded, and on disk
def disk_version(package: str) -> str | None:
    """The version of a distribution installed now (what an import in a fresh process would load), or None."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def loaded_versions(modules: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Distribution name (canonical) -> the version this process has loaded, for every imported top-level module
    that says its ``__version__`` (``pyarrow`` -> "18.1.0" if pyarrow 18.1 was imported, whatever is on disk now)."""
    modules = sys.modules if modules is None else modules
    owners = packages_distributions()
    out: dict[str, str] = {}
    for name, module in list(modules.items()):
        if "." in name or name not in owners:
            continue
        with warnings.catch_warnings():  # some packages deprecate __version__: no warning box for reading it
            warnings.simplefilter("ignore")
            loaded = getattr(module, "__version__", None)
        if isinstance(loaded, str):
            for dist in owners[name]:
                out.setdefault(canonicalize_name(dist), loaded)
    return out


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def stale_packages(loaded: Mapping[str, str], on_disk: Mapping[str, str | None]) -> list[str]:
    """The packages loaded at one version while another is installed on disk now (sorted)."""
    return sorted(p for p, v in loaded.items() if on_disk.get(p) is not None and not _same(v, on_disk[p]))


def restart_if_stale(
    *,
    loaded: Mapping[str, str] | None = None,
    on_disk: Mapping[str, str | None] | None = None,
    colab: bool | None = None,
    kill: Callable[[int, int], None] = os.kill,
    marker: Path = RESTART_MARKER,
) -> list[str]:
    """After the install cell's pip install: if a package this process had already imported (Colab imports pandas
    and pyarrow, among others, before the first cell) now has another version on disk, restart the Colab runtime
    once, saying so, so that every later import loads the installed version. Returns the stale packages.

    Only on Colab, and only once per machine (``marker``): a version that still differs after the restart is
    reported, never restarted again. Elsewhere it only reports. ``loaded``, ``on_disk``, ``colab`` and ``kill`` are
    for tests.
    """
    importlib.invalidate_caches()
    loaded = loaded_versions() if loaded is None else loaded
    on_disk = {p: disk_version(p) for p in loaded} if on_disk is None else on_disk
    loaded = {canonicalize_name(p): v for p, v in loaded.items()}
    on_disk = {canonicalize_name(p): v for p, v in on_disk.items()}
    stale = stale_packages(loaded, on_disk)
    if not stale:
        return stale
    what = ", ".join(f"{p} {loaded[p]} -> {on_disk[p]}" for p in stale)
    if (on_colab() if colab is None else colab) and not marker.exists():
        marker.write_text(what + "\n")
        print(
            f"The install replaced packages this runtime had already loaded ({what}). Restarting the runtime once "
            "so that the new versions load; when it reconnects, run this cell again (Runtime > Run all)."
        )
        sys.stdout.flush()
        kill(os.getpid(), 9)  # Colab restarts a killed kernel; the installed packages stay
    else:
        print(f"loaded versions differ from the installed ones ({what}): restart the runtime (Runtime > Restart)")
    return stale


def environment() -> str:
    """One line of the versions loaded in this process (installed where not imported yet) and the device."""
    import torch

    loaded = loaded_versions()

    def v(name: str) -> str:
        disk = disk_version(name) or "-"
        here = loaded.get(canonicalize_name(name))
        if here is None:
            return disk
        return here if disk == "-" or _same(here, disk) else f"{here} (loaded; {disk} installed: restart the runtime)"

    device = (
        f"{torch.cuda.get_device_name()} (compute capability {torch.cuda.get_device_capability()})"
        if torch.cuda.is_available()
        else "cpu"
    )
    return " | ".join(f"{p} {v(p)}" for p in PACKAGES) + f" | python {sys.version.split()[0]} | device: {device}"


# ---------------------------------------------------------------- the artifacts root and the series' choices
def default_root() -> str:
    """Where artifacts go unless 01_data chose otherwise: $MCQ_ROOT, else a Drive folder on Colab, else artifacts."""
    return os.environ.get(ROOT_ENV) or (str(DRIVE_ROOT) if on_colab() else "artifacts")


def prepare_root(root: str | Path) -> Path:
    """The artifacts folder; on Colab, Google Drive is mounted first when ``root`` lies on it (and only then)."""
    path = Path(root).expanduser()
    if on_colab() and DRIVE in (path.resolve(), *path.resolve().parents) and not (DRIVE / "MyDrive").is_dir():
        from google.colab import drive  # type: ignore

        drive.mount(str(DRIVE))
    return path


def save_series(settings: Any) -> Path:
    """Save the choices every notebook shares (`SERIES_FIELDS`) as ``root/series.json``; a root other than the
    default is also noted in `POINTER`, so that the later notebooks find it."""
    values = {name: getattr(settings, name) for name in SERIES_FIELDS}
    path = prepare_root(values["root"]) / SERIES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2) + "\n")
    if Path(values["root"]).expanduser().resolve() != Path(default_root()).expanduser().resolve():
        POINTER.parent.mkdir(parents=True, exist_ok=True)
        POINTER.write_text(json.dumps(values, indent=2) + "\n")
    else:
        POINTER.unlink(missing_ok=True)
    print(f"saved {', '.join(f'{k}={v!r}' for k, v in values.items())} -> {path} (the later notebooks read it)")
    return path


def load_series(root: str | Path | None = None) -> dict[str, Any]:
    """The choices made in 01_data, as keyword arguments of any settings class: from ``root/series.json``
    (``root``: the argument, else where 01_data saved it, else the default root). Without one, the defaults,
    with a note saying to run 01_data."""
    if root is None and not os.environ.get(ROOT_ENV) and POINTER.is_file():
        root = json.loads(POINTER.read_text())["root"]
    root = str(root or default_root())
    path = prepare_root(root) / SERIES_FILE
    if not path.is_file():
        print(f"no {path}: using the defaults (root {root!r}); run 01_data first to choose the model and data")
        return {"root": root}
    values = json.loads(path.read_text())
    unknown = sorted(set(values) - set(SERIES_FIELDS))
    if unknown:
        raise ValueError(f"{path} holds unknown keys {unknown}: run 01_data again to rewrite it")
    print(f"from {path}: {', '.join(f'{k}={v!r}' for k, v in values.items())}")
    return values


# ---------------------------------------------------------------- the repository's published records
PACKAGE = "llama32-mcq-cot-helpers"


def repo_file(path: str, branch: str = "main") -> str:
    """A file of the repository (``assets/results/comparisons.csv``): the checkout's copy where the package runs
    from one, else its raw GitHub address (the repository named in the package's metadata), which pandas reads."""
    local = Path(__file__).resolve().parents[1] / path
    if local.is_file():
        return str(local)
    urls = dict(u.split(", ", 1) for u in metadata(PACKAGE).get_all("Project-URL") or [] if ", " in u)
    repo = urls.get("Repository", "").removeprefix("https://github.com/").strip("/")
    if not repo:
        raise FileNotFoundError(f"{path}: no checkout here and no Repository URL in {PACKAGE}'s metadata")
    return f"https://raw.githubusercontent.com/{repo}/{branch}/{path}"

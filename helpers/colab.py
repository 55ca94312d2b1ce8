"""What the notebooks' first cells need: the environment's versions, and Google Drive mounted only when used."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DRIVE = Path("/content/drive")
PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "liger-kernel", "ipywidgets")


def on_colab() -> bool:
    return "google.colab" in sys.modules


def environment() -> str:
    """One line of package versions and the device, for the notebook's first output."""
    import torch

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    device = (
        f"{torch.cuda.get_device_name()} (compute capability {torch.cuda.get_device_capability()})"
        if torch.cuda.is_available()
        else "cpu"
    )
    return " | ".join(f"{p} {v(p)}" for p in PACKAGES) + f" | python {sys.version.split()[0]} | device: {device}"


def prepare_root(root: str | Path) -> Path:
    """The artifacts folder; on Colab, Google Drive is mounted first when ``root`` lies on it (and only then)."""
    path = Path(root).expanduser()
    if on_colab() and DRIVE in (path.resolve(), *path.resolve().parents) and not (DRIVE / "MyDrive").is_dir():
        from google.colab import drive  # type: ignore

        drive.mount(str(DRIVE))
    return path

"""Every relative link and every Open-in-Colab badge in the README and the notebooks points to a file
that exists in the repository (a learner's first click must not 404)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
COLAB = re.compile(r"colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/([^)\s]+)")


def documents() -> list[tuple[Path, str]]:
    docs = [(REPO / "README.md", (REPO / "README.md").read_text())]
    for nb_path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        docs.append((nb_path, "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")))
    return docs


@pytest.mark.parametrize("path,text", documents(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_relative_links_and_colab_badges_resolve(path: Path, text: str):
    missing = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        if not (path.parent / target.split("#")[0]).exists():
            missing.append(target)
    missing += [m for m in COLAB.findall(text) if not (REPO / m).exists()]
    assert not missing, f"{path.name} links to files that do not exist: {missing}"

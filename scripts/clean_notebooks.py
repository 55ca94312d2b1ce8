"""Strip outputs, execution counts and widget state from notebooks (commit them clean).

python scripts/clean_notebooks.py notebooks/*.ipynb          # clean in place
python scripts/clean_notebooks.py --check notebooks/*.ipynb  # exit 1 if any is not clean
"""

from __future__ import annotations

import argparse
import sys

import nbformat


def dirty(nb: nbformat.NotebookNode) -> bool:
    """True when a notebook carries outputs, execution counts or widget state."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    return any(c.get("outputs") or c.get("execution_count") for c in code) or "widgets" in nb.metadata


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)
    return nb


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    bad = []
    for path in args.paths:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            bad += [path] if dirty(nb) else []
        else:
            nbformat.write(clean(nb), path)
    if bad:
        sys.exit("notebooks with outputs (run `make clean-notebooks`): " + ", ".join(bad))


if __name__ == "__main__":
    main()

"""Point the notebooks' install URL and every Open-in-Colab badge at a repository (e.g. your fork).

    python scripts/set_repo.py OWNER/NAME

The repository is named in one place, ``Repository`` under ``[project.urls]`` in pyproject.toml. This command
rewrites that line, and in README.md and notebooks/*.ipynb (any cell, markdown or code) every Colab badge
link and every ``github.com/<the old OWNER/NAME>`` URL. The branch in the badges is kept. Commit the result;
tests/test_repo_url.py checks that all of them agree with pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+")  # GitHub's OWNER/NAME
URL_LINE = re.compile(r'^(Repository\s*=\s*"https://github\.com/)([^"]+)(")', re.MULTILINE)
# A Colab badge's target: colab.research.google.com/github/OWNER/NAME/blob/BRANCH/PATH
BADGE = re.compile(r"(colab\.research\.google\.com/github/)([^/\s\"'()\\]+/[^/\s\"'()\\]+)(/blob/)")


def repository(root: Path = REPO) -> str:
    """OWNER/NAME from pyproject.toml's ``[project.urls] Repository``."""
    found = URL_LINE.search((root / "pyproject.toml").read_text())
    if not found:
        raise SystemExit(f'{root / "pyproject.toml"} has no line Repository = "https://github.com/OWNER/NAME"')
    return found.group(2)


def documents(root: Path = REPO) -> list[Path]:
    """The files that carry the repository's URL: README.md and every notebook."""
    return [root / "README.md", *sorted((root / "notebooks").glob("*.ipynb"))]


def github_url(name: str) -> re.Pattern[str]:
    """``github.com/NAME`` as a whole name: not a prefix of a longer one (``.git`` may follow)."""
    return re.compile(rf"(github\.com/){re.escape(name)}(?![\w-])(?!\.(?!git\b)\w)")


def rewrite(text: str, old: str, new: str) -> str:
    text = BADGE.sub(lambda m: f"{m.group(1)}{new}{m.group(3)}", text)
    return github_url(old).sub(lambda m: f"{m.group(1)}{new}", text)


def set_repo(new: str, root: Path = REPO) -> list[Path]:
    """Rewrite pyproject.toml and every document to ``new``; returns the files changed."""
    if not NAME.fullmatch(new):
        raise SystemExit(f"expected OWNER/NAME as on GitHub (e.g. someone/llama32-mcq-cot), got {new!r}")
    old, changed = repository(root), []
    pyproject = root / "pyproject.toml"
    for path in [pyproject, *documents(root)]:
        text = path.read_text(encoding="utf-8")
        if path == pyproject:
            updated = URL_LINE.sub(lambda m: f"{m.group(1)}{new}{m.group(3)}", text)
        else:
            updated = rewrite(text, old, new)
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repository", help="OWNER/NAME on GitHub")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository's folder (default: this one)")
    args = parser.parse_args()
    old = repository(args.root)
    changed = set_repo(args.repository, args.root)
    print(f"{old} -> {args.repository}: {len(changed)} file(s) changed")
    for path in changed:
        print(f"  {path.relative_to(args.root)}")


if __name__ == "__main__":
    main()

"""One repository URL: the Colab badges and the notebooks' install URL all name the repository of
pyproject.toml's ``[project.urls]``, and ``scripts/set_repo.py OWNER/NAME`` moves every one of them to a fork."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
BADGE = re.compile(r"colab\.research\.google\.com/github/([^/\s\"'()\\]+/[^/\s\"'()\\]+)/blob/[^/]+/([^)\s\"'\\]+)")
GITHUB = re.compile(r"github\.com/([\w.-]+/[\w-]+(?:\.(?!git\b)[\w-]+)*)")  # OWNER/NAME, without a ".git"


def repository(root: Path) -> str:
    url = tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url.startswith("https://github.com/"), url
    return url.removeprefix("https://github.com/").rstrip("/")


def cells(path: Path, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == kind]


def disagreements(root: Path) -> list[str]:
    """Every badge or install URL under ``root`` that does not name pyproject's repository, or is missing."""
    repo, notebooks, bad = repository(root), sorted((root / "notebooks").glob("0*.ipynb")), []
    readme_badges = BADGE.findall((root / "README.md").read_text())
    bad += [f"README.md: badge for {name} -> {path}" for name, path in readme_badges if name != repo]
    missing = {f"notebooks/{nb.name}" for nb in notebooks} - {path for _, path in readme_badges}
    bad += [f"README.md: no Colab badge for {path}" for path in sorted(missing)]
    for nb in notebooks:
        first = BADGE.findall(cells(nb, "markdown")[0])
        if first != [(repo, f"notebooks/{nb.name}")]:
            bad.append(f"{nb.name}: first markdown cell's badges {first}, expected one to {repo} notebooks/{nb.name}")
        bad += [
            f"{nb.name}: badge for {name}"
            for md in cells(nb, "markdown")
            for name, _ in BADGE.findall(md)
            if name != repo
        ]
        in_code = [name for code in cells(nb, "code") for name in GITHUB.findall(code)]
        if repo not in in_code:
            bad.append(f"{nb.name}: no code cell installs or clones from github.com/{repo}")
        bad += [f"{nb.name}: a code cell names github.com/{name}" for name in in_code if name != repo]
    return bad


def test_badges_and_install_url_name_the_repository_in_pyproject():
    assert not disagreements(REPO), "\n".join(["run python scripts/set_repo.py OWNER/NAME:", *disagreements(REPO)])


def copy_of_the_repository(dest: Path) -> Path:
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    shutil.copy(REPO / "README.md", dest / "README.md")
    (dest / "notebooks").mkdir()
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, dest / "notebooks" / nb.name)
    return dest


def set_repo(root: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "set_repo.py"), name, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_set_repo_points_everything_at_a_fork_and_back(tmp_path):
    fork = copy_of_the_repository(tmp_path)
    original = repository(REPO)
    done = set_repo(fork, "someone/mcq-fork")
    assert done.returncode == 0, done.stderr
    assert repository(fork) == "someone/mcq-fork"
    assert not disagreements(fork), disagreements(fork)
    stale = [p.name for p in [fork / "README.md", *fork.glob("notebooks/*.ipynb")] if original in p.read_text()]
    assert not stale, f"still naming {original}: {stale}"
    assert "ECQA-Dataset" in (fork / "README.md").read_text()  # other GitHub links are left alone
    nb = fork / "notebooks" / "03_sft.ipynb"
    text = nb.read_text()
    nb.write_text(text.replace("github.com/someone/mcq-fork", "github.com/someone/other", 1))
    assert any("03_sft.ipynb" in d and "someone/other" in d for d in disagreements(fork)), disagreements(fork)
    nb.write_text(text)
    done = set_repo(fork, original)
    assert done.returncode == 0, done.stderr
    for path in ["pyproject.toml", "README.md", *(f"notebooks/{p.name}" for p in REPO.glob("notebooks/*.ipynb"))]:
        assert filecmp.cmp(fork / path, REPO / path, shallow=False), f"{path} differs after the round trip"


@pytest.mark.parametrize("bad", ["noslash", "a/b/c", "owner-/name", "owner/na me"])
def test_set_repo_refuses_what_is_not_owner_slash_name(tmp_path, bad):
    done = set_repo(copy_of_the_repository(tmp_path), bad)
    assert done.returncode != 0 and "expected OWNER/NAME" in done.stderr
    assert repository(tmp_path) == repository(REPO)

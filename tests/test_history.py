"""What the tracked text says: the project speaks of itself (files, commits, dates, settings), never of how its work
was organised, and the README stays short enough for a learner to read in one sitting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The words, spelled so that this file does not match `git grep -inE` for them itself
WORDS = ("sess" + "ion [0-9]", "iss" + "ue [0-9]", r"\." + "carry", "gap" + r"\.sh")
HISTORY = re.compile("(?i)" + "|".join(WORDS))
BINARY = {".png", ".jpg", ".jpeg", ".gif", ".gz", ".tgz", ".zip", ".whl", ".gguf", ".pdf", ".ico"}
README_WORDS = 1500


def tracked_text_files() -> list[Path]:
    """Tracked files that read as UTF-8 text, this file left out (it holds the pattern)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e})")
    files = []
    for name in out.decode().split("\0"):
        path = REPO / name
        if not name or path.suffix.lower() in BINARY or path.resolve() == Path(__file__).resolve():
            continue
        if path.is_file():  # a tracked file deleted in the working tree is not read
            files.append(path)
    return files


def history_hits(path: Path, root: Path = REPO) -> list[str]:
    """``file:line: text`` for each line of ``path`` that speaks of how the work was organised."""
    data = path.read_bytes()
    if b"\0" in data:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    rel = path.relative_to(root)
    return [f"{rel}:{n}: {line.strip()[:120]}" for n, line in enumerate(text.splitlines(), 1) if HISTORY.search(line)]


def test_no_tracked_text_speaks_of_development_history():
    files = tracked_text_files()
    assert files, "git ls-files listed no text files"
    hits = [hit for path in files for hit in history_hits(path)]
    assert not hits, (
        "tracked text names rounds of work, tracker numbers or carry folders; name the files, commits, dates or "
        "settings instead:\n" + "\n".join(hits)
    )


def test_the_pattern_finds_what_it_should(tmp_path):
    for line in ("as in Sess" + "ion 12", "see iss" + "ue 15", "bash ." + "carry-peers/x.sh", "bash gap" + ".sh 3"):
        assert HISTORY.search(line), line
    (tmp_path / "f.md").write_text("first line\nas in sess" + "ion 4\n")
    assert [hit.split(": ")[0] for hit in history_hits(tmp_path / "f.md", tmp_path)] == ["f.md:2"]
    for line in ("a Colab session that timed out", "the issue tracker", "carry the folder", "gap 0.2 GiB"):
        assert not HISTORY.search(line), line


def readme_words(text: str) -> int:
    """Words of a Markdown text, fenced code blocks and table separator lines (``| --- | --- |``) left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    separator = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
    return sum(len(line.split()) for line in text.splitlines() if not separator.match(line))


def test_readme_words_leave_out_code_and_table_separators():
    text = "# Title\n\none two\n\n```bash\nmake demo  # not counted\n```\n\n| a | b |\n| --- | :-: |\n| c | d |\n"
    assert readme_words(text) == 2 + 2 + 5 + 5  # "# Title", "one two", and two table rows of 5 tokens each


def test_readme_is_short_enough_for_a_learner():
    words = readme_words((REPO / "README.md").read_text())
    assert words <= README_WORDS, f"README.md has {words} words; at most {README_WORDS} (move detail to docs/)"

"""JSON-lines writing that survives a kill: appends forced to disk, whole files replaced atomically."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def append_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows as JSON lines and force them to disk (flush + fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def write_jsonl_atomic(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write JSONL to a tmp file, then rename: a crash never leaves a half-written ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_jsonl(path: str | Path, repair: bool = True) -> list[dict]:
    """Rows of a JSONL file, with the one partial-line policy of the project.

    A last line without its newline is what a killed append leaves: it is ignored, and cut from the file
    when ``repair`` (so later appends stay valid; off where other processes may be reading the file). Any
    other line that is not a JSON object is an error naming the file, the line and the fix. A missing file
    reads as no rows; a ``.gz`` file is read through gzip.
    """
    path = Path(path)
    if not path.is_file():
        return []
    gz = path.suffix == ".gz"  # published records: read, never repaired
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        if repair and not gz:
            with open(path, "r+b") as f:
                f.truncate(keep)
        data = data[:keep]
    rows = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno} is not valid JSON ({e.msg}); delete the file to redo it") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno} is not a JSON object; delete the file to redo it")
        rows.append(row)
    return rows

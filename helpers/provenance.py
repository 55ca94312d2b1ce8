"""What produced an artifact, recorded beside it, so a later run never reuses it silently under other settings.

Every artifact that a later run reuses records its provenance: a JSON object of what made it (model, adapter
content hash, precision and quantization, generation or sampling settings, the data selection).

* A resumable file (evaluation records, on-policy samples) keeps ``<file>.provenance.json`` beside it.
  `resume_or_restart` compares it with what this run would write: the same -> resume; different -> the old
  file is moved aside to ``<file>.stale`` (one line says so and why) and the work is redone. Nothing is lost.
* An adapter folder keeps ``provenance.json``; the steps that start from it (pairs, DPO, evaluation) compare
  the hash of its weights with the one recorded by what they reuse and refuse a mismatch, naming the fix.

    >>> diff({"a": 1, "b": 2}, {"a": 1, "b": 3})
    'b 2 -> 3'
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def sidecar(path: str | Path) -> Path:
    """Where a file's provenance is kept: ``<file>.provenance.json`` (``provenance.json`` inside a folder, also one
    that does not exist yet: a path without a suffix)."""
    path = Path(path)
    folder = path.is_dir() or (not path.exists() and not path.suffix)  # a folder not made yet has no suffix
    return path / "provenance.json" if folder else path.with_name(path.name + ".provenance.json")


def file_hash(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def ids_hash(ids: Iterable[str]) -> str:
    """A short hash of a set of question ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def adapter_hash(folder: str | Path) -> str:
    """The content hash of an adapter folder's weights."""
    return file_hash(Path(folder) / ADAPTER_WEIGHTS)


def read(path: str | Path) -> dict[str, Any] | None:
    """The provenance recorded for a file or folder, or None when there is none (or it is unreadable)."""
    try:
        value = json.loads(sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write(path: str | Path, info: Mapping[str, Any]) -> Path:
    """Record ``info`` as the provenance of ``path`` (atomically)."""
    target = sidecar(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(dict(info), indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, target)
    return target


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The keys whose values differ, as ``key old -> new`` (``""`` when none do)."""
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}".replace("'", "") for k in keys)


def resume_or_restart(path: str | Path, expected: Mapping[str, Any]) -> bool:
    """Prepare a resumable file for a run that would produce ``expected``; True when earlier work is resumed.

    A file without provenance, or with other provenance, is moved to ``<file>.stale`` (replacing an older one)
    and the run starts afresh; the reason is printed.
    """
    path = Path(path)
    expected = json.loads(json.dumps(dict(expected), default=str))  # as it will read back
    if path.exists():
        old = read(path)
        if old == expected:
            return True
        stale = path.with_name(path.name + ".stale")
        os.replace(path, stale)
        why = diff(old, expected) if old is not None else "no provenance recorded"
        print(f"{path.name} was made by another run ({why}): moved it to {stale.name} and starting afresh")
    write(path, expected)
    return False

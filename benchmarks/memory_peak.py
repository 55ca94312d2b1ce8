"""What is alive on the GPU at a training run's peak: PyTorch's allocator history, summarised as text.

`record()` starts ``torch.cuda.memory._record_memory_history`` (Python stacks); `write()` takes the snapshot,
keeps it as ``<stem>.pickle`` (drop it on https://pytorch.org/memory_viz for the interactive view) and writes
``<stem>.txt``: the peak found by replaying the allocation trace, checked against
``torch.cuda.max_memory_allocated``, and the blocks alive at that moment grouped by the code that allocated them
(the innermost frame outside torch itself, e.g. a PEFT LoRA layer, TRL's loss, the optimizer). `peak_summary` is
the replay, a pure function of the snapshot (tested on CPU); the rest needs CUDA.
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

MAX_ENTRIES = 2_000_000  # allocator events kept; a run that records more loses its earliest (the summary says so)
# Frames inside torch say where, not who: the allocating site is the first frame outside this torch's package folder
# (matching "/torch/" in the path instead put a whole environment living under a folder named torch, transformers
# and PEFT included, "inside torch").
TORCH_DIR = str(Path(torch.__file__).parent)


def record() -> int:
    """Start recording allocations; the bytes already allocated (the replay's starting level)."""
    torch.cuda.memory._record_memory_history(max_entries=MAX_ENTRIES, stacks="python")
    return torch.cuda.memory_allocated()


def write(stem: Path, baseline: int) -> str:
    """Snapshot, stop recording, write ``<stem>.pickle`` and ``<stem>.txt``; the text."""
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".pickle").write_bytes(pickle.dumps(snapshot))
    text = peak_summary(snapshot, baseline, reported_peak=torch.cuda.max_memory_allocated())
    stem.with_suffix(".txt").write_text(text)
    return text


def _site(frames: list[dict[str, Any]], torch_dir: str) -> str:
    """The innermost frame outside torch (frames run from the allocation outwards)."""
    for f in frames:
        if not Path(f["filename"]).is_relative_to(torch_dir):
            tail = "/".join(Path(f["filename"]).parts[-3:])
            return f"{tail}:{f['line']} {f['name']}"
    return "(inside torch only)" if frames else "(no stack)"


def peak_summary(
    snapshot: dict[str, Any],
    baseline: int,
    reported_peak: int | None = None,
    top: int = 25,
    torch_dir: str = TORCH_DIR,
) -> str:
    """Replay device 0's trace from ``baseline`` bytes; the peak and what was alive then, by allocating site."""
    trace = snapshot["device_traces"][0] if snapshot.get("device_traces") else []
    events = [e for e in trace if e["action"] in ("alloc", "free_completed")]
    level, peak, peak_at = baseline, baseline, -1
    for i, e in enumerate(events):
        level += e["size"] if e["action"] == "alloc" else -e["size"]
        if level > peak:
            peak, peak_at = level, i
    live: dict[int, dict[str, Any]] = {}
    freed_before = 0  # blocks allocated before recording began and freed before the peak
    for e in events[: peak_at + 1]:
        if e["action"] == "alloc":
            live[e["addr"]] = e
        elif live.pop(e["addr"], None) is None:
            freed_before += e["size"]
    sites: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in live.values():
        site = sites[_site(e.get("frames", []), torch_dir)]
        site[0] += e["size"]
        site[1] += 1
    gib = 2**30
    lines = [
        f"peak {peak / gib:.3f} GiB at allocator event {peak_at + 1} of {len(events)}"
        + (f" (torch.cuda.max_memory_allocated: {reported_peak / gib:.3f} GiB)" if reported_peak is not None else ""),
        f"allocated before recording began and still alive: {(baseline - freed_before) / gib:.3f} GiB",
        f"allocated while recording and alive at the peak: {sum(s for s, _ in sites.values()) / gib:.3f} GiB,"
        f" {sum(n for _, n in sites.values())} blocks",
    ]
    if len(trace) >= MAX_ENTRIES:
        lines.append(
            f"WARNING: the trace holds {MAX_ENTRIES} events, its earliest were dropped: the replay is partial"
        )
    lines += ["", f"{'GiB':>8} {'blocks':>7}  allocated by (innermost frame outside torch)"]
    for site, (size, n) in sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"{size / gib:8.3f} {n:7d}  {site}")
    return "\n".join(lines) + "\n"

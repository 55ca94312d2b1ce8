"""Checkpoints a run can resume from, and the guard that refuses to resume one under other settings or inputs.

A checkpoint is used only when every file a resume reads is there and whole (a kill can cut any of them);
a run resumes only under the same `resume_key` (every setting not marked ``resume_free`` and the hashes of its
inputs, recorded in the output folder's ``provenance.json``).
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from helpers import provenance
from helpers.settings import TrainSettings

log = logging.getLogger(__name__)


def _check_checkpoint(ckpt: Path) -> None:
    """Raise OSError / ValueError unless every file a resume reads is there and whole (not cut off by a kill)."""
    state = json.loads((ckpt / "trainer_state.json").read_text())
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise ValueError("trainer_state.json has no global_step")
    weights = [ckpt / n for n in ("adapter_model.safetensors", "model.safetensors") if (ckpt / n).is_file()]
    if not weights or weights[0].stat().st_size == 0:
        raise FileNotFoundError("no weights")
    with weights[0].open("rb") as f:  # safetensors: 8-byte header size n, n bytes of JSON header, then the tensors
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if weights[0].stat().st_size < 8 + n + end:
        raise ValueError(f"{weights[0].name} is cut off")
    if weights[0].name.startswith("adapter"):
        json.loads((ckpt / "adapter_config.json").read_text())
    for name, what in (("optimizer.pt", "optimizer"), ("scheduler.pt", "scheduler")):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"no {what} state")
        if not zipfile.is_zipfile(ckpt / name):  # torch.save writes a zip; a cut-off one has no central directory
            raise ValueError(f"{name} is cut off")


def last_valid_checkpoint(output_dir: str | Path) -> str | None:
    """Newest ``checkpoint-N`` whose state and adapter files are complete; broken ones are reported."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    ckpts = sorted(
        folder.glob("checkpoint-*"),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    for ckpt in reversed(ckpts):
        try:
            _check_checkpoint(ckpt)
            return str(ckpt)
        except (OSError, ValueError) as e:
            log.warning("skipping incomplete checkpoint %s (%s); resuming from an earlier one", ckpt, e)
            print(f"skipping incomplete checkpoint {ckpt} ({e})")
    return None


def resume_key(s: TrainSettings, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint cannot be resumed under once it changes: every setting not marked ``resume_free``
    (learning rate, batch layout, LoRA shape, precision, data selection, beta, ...) and the inputs' hashes."""
    key = {f.name: getattr(s, f.name) for f in fields(s) if not f.metadata.get("resume_free")}
    return json.loads(json.dumps({**key, "inputs": dict(inputs)}, default=str))


def check_resumable(output_dir: str | Path, key: Mapping[str, Any]) -> None:
    """Refuse to resume checkpoints written under another `resume_key`, naming what changed and the fix.

    Seen: an fp16 run's checkpoint resumed in bf16 dies in transformers' grad-scaler loading; a changed batch
    size, learning rate, SFT adapter or pairs file silently mixes two runs.
    """
    old = (provenance.read(output_dir) or {}).get("resume_key")
    what = provenance.diff(old, key) if old is not None else "no provenance.json: an older version wrote them"
    if old != key:
        raise ValueError(
            f"{output_dir} holds checkpoints of a run with other settings or inputs ({what}); resuming "
            "would mix the two runs. Put the old values back to resume, or delete the folder (or choose "
            "another root or variant) to start afresh."
        )


def tokens_at(checkpoint: str | None) -> int:
    """Input tokens the trainer had seen when ``checkpoint`` was written (0 without one)."""
    if not checkpoint:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return int(state.get("num_input_tokens_seen", 0) or 0)


def finished(out: Path, resume: str | None, s: TrainSettings) -> bool:
    """Whether the run in ``out`` reached the last step it planned and is asked for the same length again."""
    if not resume:
        return False
    try:
        state = json.loads((Path(resume) / "trainer_state.json").read_text())
        before = json.loads((out / "settings.json").read_text())
    except (OSError, ValueError):
        return False
    reached = bool(state.get("max_steps")) and state["global_step"] >= state["max_steps"]
    return reached and all(before.get(k) == getattr(s, k) for k in ("max_steps", "num_train_epochs"))

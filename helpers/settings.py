"""One typed settings object per stage: what widgets edit, what is saved as JSON, what trainers read.

All artifacts live under one root (``root``; a Google Drive folder on Colab):

    root/data/dpo_pairs.jsonl        preference pairs (02_pairs)
    root/outputs/sft/                SFT adapter, checkpoints, settings.json, metrics (03_sft)
    root/outputs/dpo/                DPO adapter ... (04_dpo)
    root/eval/                       per-question records, results table and chart (05_eval)

    >>> SFTSettings(learning_rate=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be > 0, got -1.0
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="Settings")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is(value: Any, kind: str) -> bool:
    """Whether a JSON value fits a field annotation part ("int", "float", "None", "tuple[str, ...]", ...)."""
    if kind == "tuple[str, ...]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    types = {"str": str, "int": int, "float": (int, float), "bool": bool, "None": type(None)}[kind]
    return isinstance(value, types) and (kind == "bool" or not isinstance(value, bool))


@dataclass
class Settings:
    """Fields every stage shares, plus JSON round-tripping that refuses unknown keys."""

    model: str = "llama-3.2-1b"  # preset name, Hub id or local folder
    data_source: str = "hub"  # "hub" or a folder laid out like shared/data/ecqa
    root: str = "artifacts"  # every artifact lives below this folder
    train_sample_size: int | None = None  # None = all leak-free training questions
    holdout_size: int = 0  # > 0: that many train questions held out for tuning (never validation)
    seed: int = 42
    precision: str = "auto"  # auto: bf16 where the GPU has it, fp16 on a T4, fp32 on CPU
    quantize: bool | None = None  # None: 4-bit NF4 on CUDA (QLoRA); False: full-precision base (faster inference)

    def __post_init__(self) -> None:
        _need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _need(self.train_sample_size is None or self.train_sample_size > 0,
              f"train_sample_size must be positive or None, got {self.train_sample_size}")
        _need(self.holdout_size >= 0, f"holdout_size must be >= 0, got {self.holdout_size}")
        self.validate()

    def validate(self) -> None:
        """Stage-specific range checks (ValueError naming the field)."""

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Settings from plain (JSON) values: unknown keys and values of the wrong type are refused."""
        if not isinstance(values, dict):
            raise ValueError(f"{cls.__name__} needs a JSON object of fields, got {type(values).__name__}")
        known = {f.name: str(f.type) for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)}")
        for key, value in values.items():
            kinds = [k.strip() for k in known[key].split("|")]
            if not any(_is(value, kind) for kind in kinds):
                raise ValueError(f"{key} must be {' or '.join(kinds)}, got {value!r}")
        return cls(**values)

    @classmethod
    def from_json(cls: type[T], path: str | Path) -> T:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix it or delete it to use the defaults") from e
        return cls.from_dict(values)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    @property
    def root_dir(self) -> Path:
        return Path(self.root).expanduser()

    @property
    def pairs_path(self) -> Path:
        return self.root_dir / "data" / "dpo_pairs.jsonl"

    def stage_dir(self, stage: str) -> Path:
        """Adapter folder of a stage ("sft", "dpo", ...)."""
        return self.root_dir / "outputs" / stage

    @property
    def eval_dir(self) -> Path:
        return self.root_dir / "eval"


@dataclass
class UsesPairs:
    """Fields and paths of the stages that read or write pairs next to the SFT adapter."""

    pairs_file: str = ""  # default: root/data/dpo_pairs.jsonl
    sft_adapter: str = ""  # default: root/outputs/sft

    @property
    def pairs(self) -> Path:
        return Path(self.pairs_file) if self.pairs_file else self.pairs_path  # type: ignore[attr-defined]

    @property
    def sft_dir(self) -> Path:
        return Path(self.sft_adapter) if self.sft_adapter else self.stage_dir("sft")  # type: ignore[attr-defined]


@dataclass
class TrainSettings(Settings):
    """What SFT and DPO share: LoRA, optimiser, schedule, checkpoints, tracking."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "qkvo"  # "qkvo" (q/k/v/o projections) or "all-linear"
    learning_rate: float = 2e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs (smoke runs)
    # Speed defaults (benchmarks/NOTES.md): the seed's effective batch of 16 as one micro-batch of 16,
    # grouped by length, with gradient checkpointing (the seed ran 16 micro-batches of 1).
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_ratio: float = 0.03
    lr_scheduler_type: str = "cosine"
    optim: str = "auto"  # auto: paged_adamw_8bit on CUDA, adamw_torch on CPU
    gradient_checkpointing: bool = True  # False: about a third less compute, but 3x the memory
    group_by_length: bool = True  # batches of similar lengths: less padding computed
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    report_to: str = "auto"  # auto: wandb when WANDB_API_KEY is set, else local metrics only; or "none"/"wandb"
    save_merged: bool = False

    def validate(self) -> None:
        _need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _need(self.lora_r > 0, f"lora_r must be > 0, got {self.lora_r}")
        _need(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        _need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        _need(self.target_modules in ("qkvo", "all-linear"),
              f"target_modules must be 'qkvo' or 'all-linear', got {self.target_modules!r}")
        _need(self.num_train_epochs > 0 or self.max_steps > 0, "set num_train_epochs > 0 or max_steps > 0")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "save_steps", "logging_steps"):
            _need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _need(self.max_length >= 64, f"max_length must be >= 64 tokens, got {self.max_length}")
        _need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _need(self.report_to in ("auto", "none", "wandb"),
              f"report_to must be 'auto', 'none' or 'wandb', got {self.report_to!r}")

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


@dataclass
class SFTSettings(TrainSettings):
    """QLoRA SFT (the seed's defaults: lr 2e-4, effective batch 16, max length 512)."""

    @property
    def output_dir(self) -> Path:
        return self.stage_dir("sft")


@dataclass
class DPOSettings(TrainSettings, UsesPairs):
    """DPO on top of the SFT adapter (the seed's defaults: lr 5e-5, beta 0.1, effective batch 8)."""

    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 8  # pairs; chosen and rejected make 16 sequences
    gradient_accumulation_steps: int = 1
    group_by_length: bool = False
    beta: float = 0.1
    stage: str = "dpo"  # output folder name under root/outputs (e.g. "dpo-offline")
    precompute_ref_log_probs: bool = False  # True: one reference pass before training instead of one per step

    def validate(self) -> None:
        super().validate()
        _need(self.beta > 0, f"beta must be > 0, got {self.beta}")
        _need(not self.group_by_length,
              "group_by_length is not supported for DPO (TRL's DPO rows carry no input_ids to sort by); set it to False")

    @property
    def output_dir(self) -> Path:
        return self.stage_dir(self.stage)


@dataclass
class PairSettings(Settings, UsesPairs):
    """Preference pairs: ``offline`` (gold vs a wrong option's rationale) or ``on_policy`` (sampled)."""

    strategy: str = "offline"
    samples_per_question: int = 4  # on_policy: k completions per question
    temperature: float = 0.9
    max_new_tokens: int = 160
    batch_size: int = 32  # generated sequences per batch (questions per batch = batch_size // samples_per_question)
    when_all_agree: str = "offline"  # on_policy: "offline" falls back to the offline pair, "skip" drops it

    def validate(self) -> None:
        _need(self.strategy in ("offline", "on_policy"), f"strategy must be 'offline' or 'on_policy', got {self.strategy!r}")
        _need(self.samples_per_question >= 2, f"samples_per_question must be >= 2, got {self.samples_per_question}")
        _need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _need(self.max_new_tokens >= 8, f"max_new_tokens must be >= 8, got {self.max_new_tokens}")
        _need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _need(self.when_all_agree in ("offline", "skip"),
              f"when_all_agree must be 'offline' or 'skip', got {self.when_all_agree!r}")


@dataclass
class EvalSettings(Settings):
    """Evaluation of every available stage on the validation set."""

    stages: tuple[str, ...] = ("base", "sft", "dpo")  # "base" or folder names under root/outputs
    split: str = "validation"  # or "holdout" (needs holdout_size > 0): tune there, never on validation
    modes: tuple[str, ...] = ("cot", "letter")
    sample_size: int | None = None  # None = all 1,221 validation questions
    max_new_tokens: int = 192
    batch_size: int = 32

    def __post_init__(self) -> None:
        self.stages, self.modes = tuple(self.stages), tuple(self.modes)
        super().__post_init__()

    @property
    def eval_dir(self) -> Path:
        """``root/eval`` for validation, ``root/eval-holdout`` for the tuning slice."""
        return self.root_dir / ("eval" if self.split == "validation" else "eval-holdout")

    def validate(self) -> None:
        _need(set(self.modes) <= {"cot", "letter"} and bool(self.modes), f"modes must be cot and/or letter, got {self.modes}")
        _need(bool(self.stages), "stages must name at least one stage")
        _need(self.split in ("validation", "holdout"), f"split must be 'validation' or 'holdout', got {self.split!r}")
        _need(self.split != "holdout" or self.holdout_size > 0, "split='holdout' needs holdout_size > 0")
        _need(self.sample_size is None or self.sample_size > 0, f"sample_size must be positive or None, got {self.sample_size}")
        _need(self.max_new_tokens >= 8, f"max_new_tokens must be >= 8, got {self.max_new_tokens}")
        _need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")

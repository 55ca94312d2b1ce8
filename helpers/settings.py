"""One typed settings object per pipeline step: what the form edits, the command line parses, JSON saves and
the step functions read.

Every field declares its meaning in its metadata (``help``, ``choices``, ``labels``, bounds): validation, the
notebooks' form (`helpers.widgets.SettingsForm`) and the command line's ``--help`` (`helpers.cli`) are all
generated from it. Objects are frozen and checked in ``__post_init__`` (types, choices, bounds, then the step's
own rules), so no path (form, ``replace``, JSON, command line) can build an ill-typed one.

All artifacts live under one root (``root``; a Google Drive folder on Colab):

    root/data/dpo_pairs.jsonl        preference pairs (step "pairs", 02_pairs)
    root/series.json                 the choices every notebook shares (model, data_source, root, run_size; 01_data)
    root/outputs/sft/                SFT adapter, checkpoints, settings.json, provenance.json (step "sft", 03_sft;
                                     the folder is the model *variant*'s name)
    root/outputs/dpo/                DPO adapter ... (step "dpo", 04_dpo; the folder is the model *variant*'s name)
    root/eval/                       per-question records, results table and chart (step "eval", 05_eval)

``run_size`` fills the sizes a learner leaves unset (`helpers.presets.RUN_SIZES`): a field counts as set when it
is passed by name (to the constructor, in a JSON file, as a command-line option, or edited in the form), and then
keeps its value whatever the run size; ``replace`` keeps what was set.

    >>> SFTSettings().train_sample_size, SFTSettings(run_size="full").train_sample_size
    (2000, None)
    >>> SFTSettings(train_sample_size=None).train_sample_size  # set by name: the run size leaves it alone
    >>> SFTSettings(learning_rate=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be > 0, got -1.0
"""

from __future__ import annotations

import json
import os
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from helpers.eval_modes import MODE_NAMES
from helpers.fields import check_bounds, check_type, setting
from helpers.presets import PRESETS, RUN_SIZES
from helpers.prompts import ANSWER_FORMATS

T = TypeVar("T", bound="Settings")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DPO_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "apo_zero", "sigmoid_norm")  # TRL 1.16 losses on paired data


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# ---------------------------------------------------------------- the shared fields
@dataclass(frozen=True)
class Settings:
    """Fields every step shares, checking, JSON round-tripping that refuses unknown keys, and the artifact paths."""

    # Fields the lesson asks the learner to touch, in that order; the form puts the rest under "More settings".
    LESSON: ClassVar[tuple[str, ...]] = ("model", "data_source", "root", "run_size", "train_sample_size")
    STEP: ClassVar[str] = "data"  # the pipeline step these settings are for (its row of RUN_SIZES)

    model: str = setting(
        "llama-3.2-1b", "preset name, Hub id (org/name) or local model folder", suggestions=tuple(PRESETS)
    )
    data_source: str = setting(
        "hub", "'hub' (tau/commonsense_qa + ECQA) or a folder laid out like shared/data/ecqa", resume_free=True
    )
    root: str = setting("artifacts", "folder every artifact lives under (a Drive folder on Colab)", resume_free=True)
    run_size: str = setting(
        "quick",
        "quick: small sizes that run 01->05 in one short T4 sitting; full: all the data",
        choices=tuple(RUN_SIZES),
        resume_free=True,  # it only fills sizes, and the sizes themselves key the checkpoints
    )
    train_sample_size: int | None = setting(None, "train questions to use (a seeded sample); None = all", ge=1)
    holdout_size: int = setting(0, "train questions held out for tuning (never validation); 0 = none", ge=0)
    seed: int = setting(42, "seed for sampling, shuffling and training")
    precision: str = setting(
        "auto", "compute precision; auto: bf16 where the GPU has it, fp16 on a T4, fp32 on CPU", choices=PRECISIONS
    )
    quantize: bool | None = setting(
        None,
        "base weights: 4-bit NF4 (QLoRA) or full precision",
        labels=(
            (None, "auto (4-bit to train on a GPU; full precision, adapter merged, to generate where it fits)"),
            (True, "4-bit"),
            (False, "full precision"),
        ),
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> Settings:
        """Remember which fields were set by name, so that ``run_size`` fills only the others."""
        self = super().__new__(cls)
        names = [f.name for f in fields(cls)]
        object.__setattr__(self, "_set", frozenset(names[: len(args)]) | frozenset(kwargs))
        return self

    def __post_init__(self) -> None:
        for name, value in self.run_size_values(self.run_size).items():
            if name not in self.set_fields:
                object.__setattr__(self, name, value)
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = check_type(f.name, hints[f.name], getattr(self, f.name))
            check_bounds(f.name, f.metadata, value)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Rules across fields (ValueError naming the fields)."""

    # ---- the run size
    @classmethod
    def run_size_values(cls, run_size: str) -> dict[str, Any]:
        """The sizes ``run_size`` gives this step's fields when they are not set (``{}`` for an unknown size)."""
        return dict(RUN_SIZES.get(run_size, {}).get(cls.STEP, {}))

    @classmethod
    def sized_fields(cls) -> tuple[str, ...]:
        """The fields some run size fills."""
        return tuple(sorted({name for size in RUN_SIZES for name in cls.run_size_values(size)}))

    @property
    def set_fields(self) -> frozenset[str]:
        """The fields set by name when these settings were built (all of them where that is unknown)."""
        named = getattr(self, "_set", None)
        return frozenset(f.name for f in fields(self)) if named is None else named

    # ---- construction from plain values
    @classmethod
    def field_hints(cls) -> dict[str, Any]:
        """Field name -> its type."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in fields(cls)}

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        """Settings from plain (JSON) values: unknown keys and values of the wrong type are refused."""
        if not isinstance(values, dict):
            raise ValueError(f"{cls.__name__} needs a JSON object of fields, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.field_hints()))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(cls.field_hints())}")
        return cls(**values)

    @classmethod
    def from_json(cls: type[T], path: str | Path) -> T:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix it or delete it to use the defaults") from e
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path) -> Path:
        """Write the fields as JSON atomically (a tmp file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def replace(self: T, **changes: Any) -> T:
        """A checked copy with some fields changed; fields the run size filled are filled again (by the new one)."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name in self.set_fields}
        return type(self)(**{**kept, **changes})

    # ---- where artifacts live
    @property
    def root_dir(self) -> Path:
        return Path(self.root).expanduser()

    @property
    def pairs_path(self) -> Path:
        return self.root_dir / "data" / "dpo_pairs.jsonl"

    def variant_dir(self, variant: str) -> Path:
        """Adapter folder of a model variant ("sft", "dpo", "dpo-offline", ...)."""
        return self.root_dir / "outputs" / variant

    @property
    def eval_dir(self) -> Path:
        return self.root_dir / "eval"


@dataclass(frozen=True)
class UsesSFTAdapter:
    """Fields and paths of the steps that start from the SFT adapter and read or write pairs."""

    pairs_file: str = setting("", "preference pairs file; empty = root/data/dpo_pairs.jsonl")
    sft_adapter: str = setting("", "SFT adapter folder to start from; empty = root/outputs/sft")

    @property
    def pairs(self) -> Path:
        return Path(self.pairs_file) if self.pairs_file else self.pairs_path  # type: ignore[attr-defined]

    @property
    def sft_dir(self) -> Path:
        return Path(self.sft_adapter) if self.sft_adapter else self.variant_dir("sft")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings(Settings):
    """What SFT and DPO share: optimiser, schedule, batches, checkpoints, tracking."""

    learning_rate: float = setting(2e-4, "peak learning rate", gt=0, lt=1)
    num_train_epochs: float = setting(1.0, "passes over the training data", ge=0, resume_free=True)
    max_steps: int = setting(
        -1, "optimizer steps; > 0 overrides num_train_epochs (smoke runs), -1 = use epochs", ge=-1, resume_free=True
    )
    # Speed defaults (benchmarks/NOTES.md): the seed's effective batch of 16 as one micro-batch of 16,
    # grouped by length, with gradient checkpointing (the seed ran 16 micro-batches of 1).
    per_device_train_batch_size: int = setting(16, "sequences per micro-batch (per GPU)", ge=1)
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step", ge=1)
    max_length: int = setting(512, "longest sequence in tokens (prompt + target); longer ones are cut", ge=64)
    warmup_ratio: float = setting(0.03, "share of the steps spent warming the learning rate up", ge=0, lt=1)
    lr_scheduler_type: str = setting(
        "cosine",
        "learning-rate schedule after warm-up",
        choices=("cosine", "linear", "constant", "constant_with_warmup"),
    )
    optim: str = setting(
        "auto",
        "optimizer; auto: paged_adamw_8bit on CUDA, adamw_torch on CPU",
        choices=("auto", "adamw_torch", "paged_adamw_8bit", "adamw_8bit", "adafactor"),
    )
    gradient_checkpointing: bool = setting(
        True, "recompute activations: about a third more compute, a third of the memory"
    )
    group_by_length: bool = setting(True, "batches of similar lengths: less padding computed")
    save_steps: int = setting(50, "write a checkpoint every this many steps", ge=1, resume_free=True)
    save_total_limit: int = setting(2, "checkpoints kept", ge=1, resume_free=True)
    logging_steps: int = setting(5, "log the loss every this many steps", ge=1, resume_free=True)
    report_to: str = setting(
        "auto",
        "auto: wandb when WANDB_API_KEY is set, else local metrics only",
        choices=("auto", "none", "wandb"),
        resume_free=True,
    )
    save_merged: bool = setting(
        False, "also save the adapter merged into its base (a standalone model)", resume_free=True
    )

    def validate(self) -> None:
        _need(self.num_train_epochs > 0 or self.max_steps > 0, "set num_train_epochs > 0 or max_steps > 0")

    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def output_dir(self) -> Path:
        raise NotImplementedError


@dataclass(frozen=True)
class SFTSettings(TrainSettings):
    """QLoRA SFT (the seed's defaults: lr 2e-4, effective batch 16, max length 512)."""

    LESSON: ClassVar[tuple[str, ...]] = (
        "model",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "lora_r",
        "lora_alpha",
        "target_modules",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "train_sample_size",
        "variant",
        "run_size",
    )
    STEP: ClassVar[str] = "sft"

    variant: str = setting(
        "sft",
        "name of this model variant: its folder under root/outputs (e.g. sft-r16 keeps the first run)",
        resume_free=True,  # the folder itself: checkpoints in it are always of this variant
    )
    offload_checkpoints: bool = setting(
        True,
        "with gradient checkpointing on a GPU: keep each layer's saved input in host memory until the backward"
        " pass (less GPU memory, the same results)",
        resume_free=True,
    )
    liger_kernels: bool = setting(
        True,
        "on a GPU: Liger's Triton kernels for RMSNorm, RoPE and SwiGLU (less GPU memory, the same computation)",
        resume_free=True,
    )
    lora_r: int = setting(64, "LoRA rank: size of the two small matrices beside each targeted projection", ge=1)
    lora_alpha: int = setting(128, "LoRA scale: the update is multiplied by lora_alpha / lora_r", ge=1)
    lora_dropout: float = setting(0.05, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: str = setting(
        "all-linear",
        "layers that get LoRA: the q/k/v/o attention projections, or every linear layer",
        choices=("qkvo", "all-linear"),
    )
    answer_format: str = setting(
        "letter",
        "the target's final line: 'Answer: C', or 'Answer: C. ocean' with the choice's text",
        choices=ANSWER_FORMATS,
    )

    def validate(self) -> None:
        super().validate()
        _need(
            bool(self.variant) and "/" not in self.variant and self.variant != "base",
            f"variant must be a folder name other than 'base', got {self.variant!r}",
        )

    @property
    def output_dir(self) -> Path:
        return self.variant_dir(self.variant)


@dataclass(frozen=True)
class DPOSettings(TrainSettings, UsesSFTAdapter):
    """DPO on top of the SFT adapter (its LoRA shape comes from that adapter)."""

    LESSON: ClassVar[tuple[str, ...]] = (
        "model",
        "beta",
        "learning_rate",
        "nll_weight",
        "num_train_epochs",
        "max_steps",
        "variant",
        "train_sample_size",
        "run_size",
    )
    STEP: ClassVar[str] = "dpo"

    learning_rate: float = setting(5e-6, "peak learning rate", gt=0, lt=1)
    per_device_train_batch_size: int = setting(
        8, "pairs per micro-batch (chosen + rejected: twice the sequences)", ge=1
    )
    group_by_length: bool = setting(False, "not supported for DPO (TRL's DPO rows carry no lengths to sort by)")
    beta: float = setting(0.1, "DPO's beta: how far the policy may move from the SFT reference (higher = less)", gt=0)
    nll_weight: float = setting(
        0.0, "weight of an NLL (SFT) term on the chosen answers beside the DPO loss (RPO); 0 = plain DPO", ge=0
    )
    loss_type: str = setting(
        "sigmoid",
        "DPO's loss (TRL's loss_type): sigmoid is the paper's; ipo, hinge and robust bound or smooth it; apo_zero "
        "pushes chosen up and rejected down in absolute terms",
        choices=DPO_LOSSES,
    )
    compare_questions: int | None = setting(
        None,
        "validation questions the SFT and the DPO model each answer after training, compared side by side; None = all",
        ge=1,
        resume_free=True,
    )
    eval_fraction: float = setting(
        0.1,
        "share of the pairs' questions kept out of training, to measure preference accuracy on pairs DPO never saw",
        ge=0,
        lt=1,
    )
    variant: str = setting("dpo", "name of this model variant: its folder under root/outputs (e.g. dpo-offline)")
    precompute_ref_log_probs: bool = setting(False, "one reference pass before training instead of one per step")

    def validate(self) -> None:
        super().validate()
        _need(
            not self.group_by_length,
            "group_by_length is not supported for DPO (TRL's DPO rows carry no input_ids to sort by); set it to False",
        )
        _need(
            bool(self.variant) and "/" not in self.variant and self.variant not in ("base", "sft"),
            f"variant must be a folder name other than 'base' and 'sft', got {self.variant!r}",
        )

    @property
    def output_dir(self) -> Path:
        return self.variant_dir(self.variant)


# ---------------------------------------------------------------- pairs and evaluation
@dataclass(frozen=True)
class PairSettings(Settings, UsesSFTAdapter):
    """Preference pairs: ``offline`` (gold vs a wrong option's rationale) or ``on_policy`` (sampled from SFT)."""

    LESSON: ClassVar[tuple[str, ...]] = (
        "strategy",
        "samples_per_question",
        "pairs_per_question",
        "temperature",
        "when_all_agree",
        "max_new_tokens",
        "train_sample_size",
        "max_length",
        "run_size",
    )
    STEP: ClassVar[str] = "pairs"

    # The recipe's pairs (assets/recipe/NOTES.md): 8 samples of the SFT model for 1,000 questions, its own right
    # answer against its own wrong one; questions whose samples all agree give no pair.
    train_sample_size: int | None = setting(
        1000, "train questions to sample pairs for (a seeded sample); None = all (hours on a T4)", ge=1
    )
    strategy: str = setting(
        "on_policy",
        "offline: gold vs a wrong option's rationale; on_policy: the SFT model's own right vs wrong samples",
        choices=("offline", "on_policy"),
    )
    samples_per_question: int = setting(8, "on_policy: completions sampled per question", ge=2)
    pairs_per_question: int = setting(
        1, "on_policy: pairs per question at most, each a different right sample against a different wrong one", ge=1
    )
    temperature: float = setting(0.9, "on_policy: sampling temperature", gt=0)
    max_new_tokens: int = setting(160, "on_policy: longest sample in new tokens", ge=8)
    batch_size: int = setting(
        256,
        "sequences saved at a time (batch_size // samples questions); on CPU also decoded together (on a GPU "
        "continuous batching sizes its batches from free memory)",
        ge=1,
    )
    when_all_agree: str = setting(
        "skip",
        "on_policy, when all samples are right or all wrong: use the offline pair, skip the question, or (gold) "
        "pair the gold explanation against the model's own wrong sample where all are wrong",
        choices=("offline", "skip", "gold"),
    )
    rejected_first: str = setting(
        "wrong",
        "on_policy, the rejected side: a wrong letter first (wrong), or a failure first (failure: a loop that ran "
        "out of tokens, or no answer line)",
        choices=("wrong", "failure"),
    )
    greedy_sample: bool = setting(
        False,
        "on_policy: also answer each question greedily and add that answer to its samples; evaluation is greedy, "
        "and SFT's loops show up there far more often than among samples at a temperature",
    )
    weight_unsure: bool = setting(
        False,
        "on_policy, with pairs_per_question > 1: more pairs for the questions the model is unsure of "
        "(pairs_per_question x 4p(1-p), p = the share of right samples)",
    )
    max_length: int = setting(
        512, "pairs whose prompt + longer side exceed this many tokens are dropped (DPO's max_length)", ge=64
    )
    answer_format: str = setting(
        "letter", "offline pairs' final line, as the SFT run's answer_format", choices=ANSWER_FORMATS
    )


@dataclass(frozen=True)
class EvalSettings(Settings):
    """Evaluation of model variants on the validation set (or the held-out tuning slice of train)."""

    LESSON: ClassVar[tuple[str, ...]] = (
        "variants",
        "modes",
        "sample_size",
        "max_new_tokens",
        "split",
        "results_from",
        "run_size",
    )
    STEP: ClassVar[str] = "eval"

    variants: tuple[str, ...] = setting(
        ("base", "sft", "dpo"), "model variants: 'base' or folder names under root/outputs (e.g. dpo-offline)"
    )
    split: str = setting(
        "validation",
        "validation, or holdout (the tuning slice of train; needs holdout_size > 0)",
        choices=("validation", "holdout"),
    )
    modes: tuple[str, ...] = setting(
        ("cot", "cloze", "letter"), "evaluation modes (helpers.eval_modes)", choices=MODE_NAMES
    )
    sample_size: int | None = setting(None, "questions evaluated (a seeded sample); None = all", ge=1)
    max_new_tokens: int = setting(192, "cot: longest answer in new tokens", ge=8)
    batch_size: int = setting(
        32,
        "questions per batch: scored modes, and generation on CPU (on a GPU, continuous batching sizes its batches "
        "from free memory; this many are saved at a time)",
        ge=1,
    )
    k: int = setting(8, "cot@k: sampled chains of thought per question", ge=2)
    temperature: float = setting(0.7, "cot@k: sampling temperature", gt=0)
    results_from: str = setting(
        "", "a folder of published records (e.g. ../assets/results) to open instead of evaluating; empty = evaluate"
    )

    @property
    def eval_dir(self) -> Path:
        """``root/eval`` for validation, ``root/eval-holdout`` for the tuning slice, ``root/eval-published`` for
        published records opened with ``results_from``."""
        if self.results_from:
            return self.root_dir / "eval-published"
        return self.root_dir / ("eval" if self.split == "validation" else "eval-holdout")

    def validate(self) -> None:
        _need(bool(self.variants) and all(self.variants), "variants must name at least one model variant")
        _need(self.split != "holdout" or self.holdout_size > 0, "split='holdout' needs holdout_size > 0")


STEP_SETTINGS: dict[str, type[Settings]] = {
    "data": Settings,
    "sft": SFTSettings,
    "pairs": PairSettings,
    "dpo": DPOSettings,
    "eval": EvalSettings,
}

"""QLoRA SFT and DPO with TRL, driven by `helpers.settings`; checkpoints that resume by themselves.

Rerunning `train_sft` / `train_dpo` with the same output folder continues from the last valid
checkpoint (a corrupt or half-written one is skipped with a message). Metrics are always written
next to the adapter (``metrics.json``, ``metrics.csv``); wandb is added when asked for or when a
``WANDB_API_KEY`` is present.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from helpers import models, prompts
from helpers.settings import DPOSettings, SFTSettings, TrainSettings

log = logging.getLogger(__name__)
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]


def lora_config(s: TrainSettings) -> Any:
    """The LoRA adapter: r, alpha, dropout and target modules from the settings."""
    from peft import LoraConfig

    return LoraConfig(
        r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_dropout=s.lora_dropout,
        target_modules=QKVO if s.target_modules == "qkvo" else "all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )


def wants_wandb(report_to: str) -> bool:
    if report_to == "auto":
        return bool(os.environ.get("WANDB_API_KEY")) or os.environ.get("WANDB_MODE") == "offline"
    return report_to == "wandb"


def ddp_args(s: TrainSettings) -> dict[str, Any]:
    """What a run as several processes (``accelerate launch``, ``torchrun``: DDP) needs; harmless in one process."""
    args: dict[str, Any] = {
        # Every LoRA weight takes part in every step, so DDP need not search for unused ones. Left unset,
        # transformers searches (its default for a model that is not a PreTrainedModel, as a PeftModel is not),
        # which costs a walk over the autograd graph each step and breaks reentrant gradient checkpointing.
        "ddp_find_unused_parameters": False,
    }
    if s.gradient_checkpointing:
        # Non-reentrant checkpointing is the variant DDP supports (reentrant recomputation marks a weight ready
        # twice). transformers 5.x defaults to it; pinned so a version with the old default cannot switch it.
        args["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Several processes without a GPU: transformers makes them one DDP run (gloo) only when told to use the
        # CPU; otherwise each process trains alone on all the data. One process is left as it was.
        args["use_cpu"] = True
    return args


def common_args(s: TrainSettings) -> dict[str, Any]:
    """TrainingArguments fields shared by SFTConfig and DPOConfig."""
    cuda = torch.cuda.is_available()
    dtype = models.compute_dtype(s.precision) if cuda else torch.float32
    return dict(
        **ddp_args(s),
        output_dir=str(s.output_dir),
        learning_rate=s.learning_rate,
        num_train_epochs=s.num_train_epochs,
        max_steps=s.max_steps,
        per_device_train_batch_size=s.per_device_train_batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        warmup_steps=s.warmup_ratio,
        lr_scheduler_type=s.lr_scheduler_type,
        optim=("paged_adamw_8bit" if cuda else "adamw_torch") if s.optim == "auto" else s.optim,
        gradient_checkpointing=s.gradient_checkpointing,
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype == torch.float16,
        train_sampling_strategy="group_by_length" if s.group_by_length else "random",
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        logging_steps=s.logging_steps,
        logging_first_step=True,
        include_num_input_tokens_seen="non_padding",
        report_to=["wandb"] if wants_wandb(s.report_to) else "none",
        run_name=f"{Path(s.root).name}-{s.output_dir.name}",
        seed=s.seed,
        dataloader_num_workers=0,
    )


def sft_config(s: SFTSettings, eos_token: str | None = None) -> Any:
    """`trl.SFTConfig` for these settings (loss on the completion only)."""
    from trl import SFTConfig

    return SFTConfig(**common_args(s), completion_only_loss=True, eos_token=eos_token, packing=False)


def dpo_config(s: DPOSettings) -> Any:
    """`trl.DPOConfig`; prompts too long for max_length are filtered out in `pairs`, not truncated here."""
    from trl import DPOConfig

    return DPOConfig(**common_args(s), beta=s.beta, precompute_ref_log_probs=s.precompute_ref_log_probs)


def sft_dataset(tokenizer: Any, records: Dataset) -> Dataset:
    """Records -> ``{"prompt", "completion"}`` strings in the one prompt format."""
    return records.map(lambda r: prompts.to_prompt_completion(tokenizer, r), remove_columns=records.column_names)


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
    ckpts = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    for ckpt in reversed(ckpts):
        try:
            _check_checkpoint(ckpt)
            return str(ckpt)
        except (OSError, ValueError) as e:
            log.warning("skipping incomplete checkpoint %s (%s); resuming from an earlier one", ckpt, e)
            print(f"skipping incomplete checkpoint {ckpt} ({e})")
    return None


class MetricsFile(TrainerCallback):
    """Writes the trainer's log history to ``metrics.json`` in the output folder at every log."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / "metrics.json"

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state.log_history))
            tmp.replace(self.path)


@dataclass
class TrainResult:
    """What a training run produced and how fast it went."""

    output_dir: Path
    log_history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_gib: float = 0.0
    resumed_from: str | None = None


def keep_adapter_fp32_for_fp16(trainer: Any) -> None:
    """T4 fix: TRL casts a 4-bit model's trainable LoRA weights to bf16, which the fp16 grad scaler
    cannot unscale ("_amp_foreach_non_finite_check_and_unscale_cuda not implemented for 'BFloat16'").
    Under fp16 mixed precision the trainable weights go back to fp32, as mixed precision expects."""
    if trainer.args.fp16:
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()


# Settings a checkpoint cannot be resumed under once they change (the weights, optimizer or grad-scaler
# state saved in it would not fit); anything else (learning rate, max_steps, ...) may change on a resume.
RESUME_FIXED = ("model", "precision", "quantize", "lora_r", "lora_alpha", "target_modules",
                "per_device_train_batch_size", "gradient_accumulation_steps")


def check_resumable(output_dir: str | Path, s: TrainSettings) -> None:
    """Refuse to resume checkpoints written under other fixed settings (`RESUME_FIXED`), naming the fix.

    Seen: an fp16 run's checkpoint resumed in bf16 dies in transformers' grad-scaler loading with an
    AttributeError; a changed batch size silently mixes two runs' schedules.
    """
    saved = Path(output_dir) / "settings.json"
    try:
        old = json.loads(saved.read_text())
    except (OSError, ValueError):
        return  # nothing to compare with
    new = asdict(s)
    changed = {k: (old[k], new[k]) for k in RESUME_FIXED if k in old and old[k] != new[k]}
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"{output_dir} holds checkpoints of a run with other settings ({what}); resuming would mix "
                         f"the two runs. Put the old values back to resume, or delete {output_dir} (or choose "
                         "another root or stage) to start afresh.")


def _run(trainer: Any, s: TrainSettings, tokenizer: Any) -> TrainResult:
    """Train (resuming), then save adapter, tokenizer, metrics and summary; under DDP every process
    trains and only the main one writes (checkpoints and the adapter: `Trainer` itself)."""
    out = s.output_dir
    main = trainer.is_world_process_zero()
    resume = last_valid_checkpoint(out)
    if resume:
        check_resumable(out, s)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        s.to_json(out / "settings.json")
    keep_adapter_fp32_for_fp16(trainer)
    if resume and main:
        print(f"resuming from {resume}")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    trainer.save_model(str(out))  # called by every process; writes on the main one
    history = trainer.state.log_history
    # num_input_tokens_seen is summed over all processes by the trainer: the run's throughput, not one GPU's
    tokens = max((h.get("num_input_tokens_seen", 0) for h in history), default=0)
    result = TrainResult(
        output_dir=out,
        log_history=history,
        seconds=seconds,
        tokens_per_s=tokens / seconds if seconds else 0.0,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,  # this process's GPU
        resumed_from=resume,
    )
    if main:
        tokenizer.save_pretrained(str(out))
        (out / "metrics.json").write_text(json.dumps(history))
        import pandas as pd

        pd.DataFrame(history).to_csv(out / "metrics.csv", index=False)
        summary = {k: v for k, v in vars(result).items() if k not in ("output_dir", "log_history")}
        summary["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        summary["world_size"] = trainer.args.world_size  # processes (GPUs) that trained together
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        if s.save_merged:
            models.save_merged(out, out.with_name(out.name + "-merged"), precision=s.precision)
    trainer.accelerator.wait_for_everyone()  # every process returns once the artifacts are written
    return result


def train_sft(s: SFTSettings, train_records: Dataset, model: Any = None, tokenizer: Any = None,
              callbacks: list[TrainerCallback] | None = None) -> TrainResult:
    """QLoRA SFT of ``s.model`` on train records (loss on the target only); resumes if interrupted."""
    from trl import SFTTrainer

    tokenizer = tokenizer or models.load_tokenizer(s.model)
    model = model or models.load_model(s.model, precision=s.precision, quantize=s.quantize)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(s, eos_token=tokenizer.eos_token),
        train_dataset=sft_dataset(tokenizer, train_records),
        processing_class=tokenizer,
        peft_config=lora_config(s),
        callbacks=[MetricsFile(s.output_dir), *(callbacks or [])],
    )
    return _run(trainer, s, tokenizer)


def train_dpo(s: DPOSettings, pairs: Dataset, model: Any = None, tokenizer: Any = None,
              callbacks: list[TrainerCallback] | None = None) -> TrainResult:
    """DPO continuing from the SFT adapter; the reference policy is a frozen copy of that adapter.

    TRL adds the copy as a second adapter ("ref") on the same base weights, so the reference is
    exactly the SFT model at the cost of one extra small adapter, not a second base model.
    """
    from trl import DPOTrainer

    base = models.sft_adapter_base(s.sft_dir, s.model, type(s).__name__)
    tokenizer = tokenizer or models.load_tokenizer(base)
    model = model or models.load_adapter_model(s.sft_dir, precision=s.precision, trainable=True, quantize=s.quantize)
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=dpo_config(s),
        train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
        processing_class=tokenizer,
        callbacks=[MetricsFile(s.output_dir), *(callbacks or [])],
    )
    return _run(trainer, s, tokenizer)

"""QLoRA SFT and DPO with TRL, driven by `helpers.settings`; checkpoints that resume by themselves.

Rerunning `train_sft` / `train_dpo` with the same output folder continues from the last valid
checkpoint (a corrupt or half-written one is skipped with a message). Metrics are always written
next to the adapter (``metrics.json``, ``metrics.csv``); wandb is added when asked for or when a
``WANDB_API_KEY`` is present.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import TrainerCallback

from helpers import models, prompts, provenance
from helpers.checkpoints import check_resumable, finished, last_valid_checkpoint, resume_key, tokens_at
from helpers.settings import DPOSettings, SFTSettings, TrainSettings

log = logging.getLogger(__name__)
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]


def lora_config(s: SFTSettings) -> Any:
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
        args["gradient_checkpointing_kwargs"] = checkpointing_kwargs(s)
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Several processes without a GPU: transformers makes them one DDP run (gloo) only when told to use the
        # CPU; otherwise each process trains alone on all the data. One process is left as it was.
        args["use_cpu"] = True
    return args


def checkpointing_kwargs(s: TrainSettings) -> dict[str, Any]:
    """``gradient_checkpointing_kwargs``: how the checkpointed decoder layers save and recompute."""
    # Non-reentrant checkpointing is the variant DDP supports (reentrant recomputation marks a weight ready
    # twice). transformers 5.x defaults to it; pinned so a version with the old default cannot switch it.
    kwargs: dict[str, Any] = {"use_reentrant": False}
    # SFT only: `save_on_cpu(pin_memory=True)` around each checkpointed layer, so the layer inputs wait for the
    # backward pass in host memory. The same values, less GPU memory (docs/speed.md; benchmarks/NOTES.md). Without a
    # GPU they are in host memory already. TRL 1.16's DPOTrainer turns checkpointing off for each reference pass
    # and back on with `gradient_checkpointing_enable(kwargs)`, which drops `offload` (measured: no layer
    # offloaded, the same peak), so DPO does not offer it.
    if isinstance(s, SFTSettings) and s.offload_checkpoints and torch.cuda.is_available() and _transformers_offloads():
        kwargs["offload"] = True
    return kwargs


def _transformers_offloads() -> bool:
    """transformers >= 5.17 (the pinned version) takes ``offload``; an older one, e.g. a Colab runtime that
    imported its own 5.15 before the install cell, would hand it to ``torch.utils.checkpoint`` and fail."""
    from transformers import PreTrainedModel

    return "offload" in inspect.signature(PreTrainedModel.gradient_checkpointing_enable).parameters


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
        dataloader_pin_memory=cuda,  # pinning without a GPU only warns
    )


def liger_args(s: SFTSettings) -> dict[str, Any]:
    """Liger's layer kernels for SFT on a GPU: the decoder layer's RMSNorms, RoPE and SwiGLU as Triton kernels that
    keep fewer intermediate values for the backward pass (docs/speed.md: -0.13 GiB at 1B size in
    fp16, same speed and losses). TRL keeps its own fused LM head, so Liger's fused cross-entropy stays off. Triton
    needs a GPU; without liger-kernel (the ``colab`` extra installs it) training goes on without the kernels."""
    if not (s.liger_kernels and torch.cuda.is_available()):
        return {}
    if importlib.util.find_spec("liger_kernel") is None:
        log.warning(
            "liger-kernel is not installed: training without its kernels (pip install 'liger-kernel>=0.8.5,<0.9')"
        )
        return {}
    kernels = {"rope": True, "rms_norm": True, "swiglu": True, "fused_linear_cross_entropy": False}
    return {"use_liger_kernel": True, "liger_kernel_config": kernels}


def sft_config(s: SFTSettings, eos_token: str | None = None) -> Any:
    """`trl.SFTConfig` for these settings (loss on the completion only)."""
    from trl import SFTConfig

    return SFTConfig(**common_args(s), **liger_args(s), completion_only_loss=True, eos_token=eos_token, packing=False)


def dpo_config(s: DPOSettings) -> Any:
    """`trl.DPOConfig`; prompts too long for max_length are filtered out in `pairs`, not truncated here."""
    from trl import DPOConfig

    loss = s.loss_type
    losses = (
        {"loss_type": [loss, "sft"], "loss_weights": [1.0, s.nll_weight]} if s.nll_weight else {"loss_type": [loss]}
    )
    return DPOConfig(**common_args(s), beta=s.beta, precompute_ref_log_probs=s.precompute_ref_log_probs, **losses)


def sft_dataset(tokenizer: Any, records: Dataset, answer_format: str = "letter") -> Dataset:
    """Records -> ``{"prompt", "completion"}`` strings in the one prompt format."""
    return records.map(
        lambda r: prompts.to_prompt_completion(tokenizer, r, answer_format), remove_columns=records.column_names
    )


@dataclass
class LossMask:
    """Token ids of prompt + completion and which of them carry the loss (1) or are masked (0)."""

    ids: list[int]
    mask: list[int]


def loss_mask(tokenizer: Any, prompt: str, completion: str, max_length: int | None = None) -> LossMask:
    """The completion mask TRL's SFTTrainer builds for a prompt/completion string pair.

    Mirrors TRL 1.16 (``completion_only_loss``, no packing): tokenize the prompt and prompt +
    completion the way the tokenizer does by default, the completion starts where the two token
    lists diverge, then both are cut to ``max_length`` (``truncation_mode="keep_start"``).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion)["input_ids"]
    n = next((i for i, (a, b) in enumerate(zip(prompt_ids, ids)) if a != b), min(len(prompt_ids), len(ids)))
    mask = [0] * n + [1] * (len(ids) - n)
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return LossMask(list(ids), mask)


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


# The attention kernels training lets PyTorch's SDPA choose from: all but cuDNN's. On Hopper cards (H100, H200) PyTorch
# tries cuDNN first, and cuDNN builds an execution graph on the host for every new batch shape (each padded batch has
# its own): on an H200 that made steps 1.2-2.7x slower than FlashAttention / memory-efficient SDPA, same losses
# (docs/speed.md; benchmarks/NOTES.md, 2026-11-28). A T4 (sm75) cannot run cuDNN attention (sm80 or newer), so
# nothing changes there.
SDPA_BACKENDS = [b for name, b in SDPBackend.__members__.items() if name != "ERROR"]  # every one: PyTorch's own choice
TRAINING_ATTENTION = [b for b in SDPA_BACKENDS if b != SDPBackend.CUDNN_ATTENTION]


def keep_adapter_fp32_for_fp16(trainer: Any) -> None:
    """T4 fix: TRL casts a 4-bit model's trainable LoRA weights to bf16, which the fp16 grad scaler
    cannot unscale ("_amp_foreach_non_finite_check_and_unscale_cuda not implemented for 'BFloat16'").
    Under fp16 mixed precision the trainable weights go back to fp32, as mixed precision expects."""
    if trainer.args.fp16:
        for p in trainer.model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()


def release_optimizer_overrides(model: Any) -> None:
    """Take ``model``'s modules out of bitsandbytes' process-wide optimizer manager once training is over.

    With an 8-bit bitsandbytes optimizer (``paged_adamw_8bit``, the GPU default) transformers' Trainer registers
    every ``nn.Embedding`` with ``bitsandbytes.optim.GlobalOptimManager`` (to keep its optimizer state in 32 bits),
    and that singleton holds the module for the life of the process: each training left its input embedding on the
    GPU (0.49 GiB at Llama-3.2-1B shape in bf16), so a training cell run twice in one notebook kernel, or SFT then
    DPO in one process, carried the earlier model's embedding (measured: benchmarks/NOTES.md, 2026-12-05)."""
    bnb = sys.modules.get("bitsandbytes")  # imported only where a 4-bit model or an 8-bit optimizer was made
    optim = getattr(bnb, "optim", None)
    if optim is None:
        return
    manager = optim.GlobalOptimManager.get_instance()
    mine = {id(m) for m in model.modules()}
    manager.module_weight_config_triple = [t for t in manager.module_weight_config_triple if id(t[0]) not in mine]


def _finished_result(out: Path, history: list[dict], resume: str | None) -> TrainResult:
    """The result of a run that had already finished: its saved summary, nothing trained now."""
    saved = json.loads((out / "train_summary.json").read_text())
    kept = {k: v for k, v in saved.items() if k in ("seconds", "tokens_per_s", "peak_gib")}
    return TrainResult(output_dir=out, log_history=history, resumed_from=resume, **kept)


def _run(trainer: Any, s: TrainSettings, tokenizer: Any, inputs: Mapping[str, Any]) -> TrainResult:
    """Train (resuming), then save adapter, tokenizer, metrics and summary; under DDP every process
    trains and only the main one writes (checkpoints and the adapter: `Trainer` itself)."""
    out = s.output_dir
    main = trainer.is_world_process_zero()
    key = resume_key(s, inputs)
    resume = last_valid_checkpoint(out)
    if resume:
        check_resumable(out, key)
    summary_path = out / "train_summary.json"
    if finished(out, resume, s) and summary_path.is_file():
        # A finished run asked to train again: left alone (transformers 5.17 resumed at its last step trains one
        # more step, so this is decided before `train`, not from the step count after it).
        if main:
            print(
                f"{out} already finished at step {resume.rsplit('-', 1)[-1]}: nothing to train (raise max_steps "
                "or num_train_epochs to train on, or delete the folder to retrain)"
            )
        history = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else []
        return _finished_result(out, history, resume)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        s.to_json(out / "settings.json")
        provenance.write(
            out,
            {
                "resume_key": key,
                "quantized": models.is_quantized(trainer.model),
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "versions": _versions(),
            },
        )
    keep_adapter_fp32_for_fp16(trainer)
    if resume and main:
        print(f"resuming from {resume}")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start_step = int(resume.rsplit("-", 1)[-1]) if resume else 0
    tokens_before = tokens_at(resume)  # read now: save_total_limit may delete that checkpoint while training
    start = time.perf_counter()
    try:
        with sdpa_kernel(TRAINING_ATTENTION):
            trainer.train(resume_from_checkpoint=resume)
    finally:  # interrupted too: a notebook cell run again must not find the last model still held
        release_optimizer_overrides(trainer.model)
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    if resume and trainer.state.global_step <= start_step and summary_path.is_file():
        if main:  # a finished run asked to train again: nothing was trained, the artifacts stay as they are
            print(f"{out} already finished at step {start_step}: nothing to train (delete the folder to retrain)")
        return _finished_result(out, history, resume)
    trainer.save_model(str(out))  # called by every process; writes on the main one
    # tokens trained in this call: seen at the end minus seen at the checkpoint it resumed from (summed over
    # all processes by the trainer: the run's throughput, not one GPU's)
    tokens = max((h.get("num_input_tokens_seen", 0) for h in history), default=0) - tokens_before
    result = TrainResult(
        output_dir=out,
        log_history=history,
        seconds=seconds,
        tokens_per_s=tokens / seconds if seconds else 0.0,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,  # this process's GPU
        resumed_from=resume,
    )
    if main:
        _write_outputs(trainer, s, tokenizer, result)
    trainer.accelerator.wait_for_everyone()  # every process returns once the artifacts are written
    return result


def _versions() -> dict[str, str]:
    import peft
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
    }


def _write_outputs(trainer: Any, s: TrainSettings, tokenizer: Any, result: TrainResult) -> None:
    """Tokenizer, metrics (JSON and CSV), the run's summary and, when asked, the merged model."""
    import pandas as pd

    out = result.output_dir
    tokenizer.save_pretrained(str(out))
    (out / "metrics.json").write_text(json.dumps(result.log_history))
    pd.DataFrame(result.log_history).to_csv(out / "metrics.csv", index=False)
    summary = {k: v for k, v in vars(result).items() if k not in ("output_dir", "log_history")}
    summary["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    summary["world_size"] = trainer.args.world_size  # processes (GPUs) that trained together
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    if s.save_merged:
        models.save_merged(out, out.with_name(out.name + "-merged"), precision=s.precision)


def train_sft(
    s: SFTSettings,
    train_records: Dataset,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[TrainerCallback] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> TrainResult:
    """QLoRA SFT of ``s.model`` on train records (loss on the target only); resumes if interrupted."""
    from trl import SFTTrainer

    tokenizer = tokenizer or models.load_tokenizer(s.model)
    model = model or models.load_model(s.model, precision=s.precision, quantize=s.quantize)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(s, eos_token=tokenizer.eos_token),
        train_dataset=sft_dataset(tokenizer, train_records, s.answer_format),
        processing_class=tokenizer,
        peft_config=lora_config(s),
        callbacks=[MetricsFile(s.output_dir), *(callbacks or [])],
    )
    return _run(trainer, s, tokenizer, inputs or {})


def train_dpo(
    s: DPOSettings,
    pairs: Dataset,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: list[TrainerCallback] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> TrainResult:
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
    return _run(trainer, s, tokenizer, inputs or {})

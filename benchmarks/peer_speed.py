"""Training speed side by side with the peers: Unsloth, and Liger kernels / padding-free batching as levers.

    python benchmarks/peer_speed.py --sides project padding-free liger unsloth --precision bf16 fp16 \
        --stages sft dpo --steps 24 --dpo-steps 16 --tokenizer TOKENIZER_FOLDER --data ECQA_FOLDER

    python benchmarks/peer_speed.py --tiny --sides project padding-free   # CPU smoke run, toy model

Same model, data, effective batch and LoRA shape for every side: a random Llama-3.2-1B-shaped model
(`train_speed.LLAMA_32_1B`) loaded 4-bit NF4, real ECQA records in the project's prompt format, SFT
16 sequences per step (one micro-batch, grouped by length), DPO 8 pairs per step, the project's default
LoRA shape (`SFTSettings`: r64 / alpha 128 on all linear layers), paged AdamW 8-bit,
the project's learning rates. Each side runs in its own process
(Unsloth and Liger patch transformers globally), one configuration after another on a fresh model:

* ``project``: `helpers.training.train_sft` / `train_dpo` at the defaults (`helpers.settings`),
  through `train_speed.run_one`, exactly as benchmarks/train_speed.py runs them;
* ``padding-free``: the project's SFT with TRL's ``padding_free=True`` (sequences of a batch
  concatenated, no pad tokens; the attention stays SDPA, which transformers restricts to each
  sequence through a block-diagonal mask built from ``position_ids``; TRL needs ``max_length=None``
  for it, and no ECQA sequence comes near 512 tokens). TRL 1.16's DPOTrainer ignores padding_free;
* ``liger``: the project's SFT and DPO with ``use_liger_kernel=True`` (Liger's RMSNorm, RoPE and
  SwiGLU kernels; TRL 1.16 keeps its own fused LM head instead of Liger's fused cross-entropy). SFT's default on a
  GPU (``SFTSettings.liger_kernels``), so for SFT ``liger`` is the project itself and ``no-liger``
  the project without them;
* ``gc-half`` / ``gc-offload``: the project's SFT and DPO with transformers 5.17's
  ``gradient_checkpointing_kwargs`` ``every_n_layers=2`` (recompute every other layer, keep the rest) or
  ``offload=True`` (checkpointed activations kept in host memory: Unsloth's idea, without Unsloth). The package
  pins transformers 5.17, so Colab's notebooks have both; ``offload`` is the default
  (``offload_checkpoints``), so ``gc-offload`` is now the project itself and ``gpu-checkpoints`` is the project
  as it was (the checkpointed activations kept on the GPU);
* ``fp16-nocast``: the project's SFT and DPO with PEFT's ``disable_input_dtype_casting``: under fp16 the
  LoRA weights are fp32 (the grad scaler needs them so), and PEFT casts every LoRA layer's fp16 input up to
  fp32 before autocast casts it back down; with the cast off the input stays fp16 (a no-op under bf16).
  Measured 1.02x: no effect (benchmarks/NOTES.md, 2026-11-28);
* ``cudnn-attn``: the project's SFT and DPO as they were before 2026-11-28, with PyTorch's cuDNN attention among
  the SDPA backends training may use (`helpers.training.TRAINING_ATTENTION` leaves it out since). On Hopper cards
  PyTorch picks cuDNN first, and cuDNN builds an execution graph on the host for each new shape (every padded
  batch has its own); a T4 never uses cuDNN attention. Measured as the lever ``no-cudnn-attn`` (the other way
  round) at 1.2–2.7x: adopted (benchmarks/NOTES.md, 2026-11-28);
* ``dropout-0`` / ``dropout-0-offload``: the project's SFT with LoRA dropout 0 (Unsloth's setting; the project's is
  0.05, which keeps a dropped-out copy of each LoRA layer's input and its mask for the backward pass), the first
  with the checkpointed activations on the GPU (``gpu-checkpoints``), the second with ``gc-offload``: the two
  memory differences to Unsloth known from the code, measured. Dropout changes what is learned, so this is an
  explanation, not a candidate default (SFT only: DPO trains the SFT adapter as it is);
* ``unsloth``: ``FastLanguageModel`` 4-bit + ``get_peft_model`` (dropout 0, Unsloth's fast-LoRA path
  and its notebooks' setting; the project uses 0.05) with Unsloth's offloaded gradient checkpointing,
  trained by TRL's SFTTrainer / DPOTrainer as Unsloth patches them. Unsloth 2026.10.9 pins
  trl<=1.15 and datasets<5, so this process puts a separate site folder first on its path
  (``--unsloth-site``; benchmarks/NOTES.md has the exact versions). DPO starts from a fresh LoRA with
  the adapter disabled as reference (the project starts from the SFT adapter with a frozen copy as
  reference: the same computation per step).

``tokens_per_s`` counts non-padding tokens over the whole training call (trainer set-up included),
``steady_tokens_per_s`` leaves out the first optimizer steps, ``peak_gib`` is
``torch.cuda.max_memory_allocated`` from before the model load (``allocated_before_gib``: what earlier rows of
the process left allocated then, counted in the peak; before a fix of 2026-12-05 each training left its input
embedding, 0.49 GiB, in bitsandbytes' optimizer manager, so a process's second row read ~0.5 GiB high). Rows
(with the card, and a failure row with the error's last lines for a side that breaks) go to
benchmarks/results/<date>-<card>-peers.json; a short table is printed last. Before anything is timed, the first
side and Unsloth run their rows for ``--warmup-steps`` steps (untimed, rows discarded): on a freshly started
machine the first process measured ~1.5x slower than the same work after it. ``--profile-steps`` and
``--memory-steps`` add untimed runs after the timed rows: a profile of the steady steps, and what is alive on the
GPU at each side's peak (`memory_peak`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # train_speed beside this file; helpers one folder up

SIDES = (
    *("project", "padding-free", "liger", "no-liger", "gc-half", "gc-offload", "gpu-checkpoints"),
    *("fp16-nocast", "cudnn-attn", "dropout-0", "dropout-0-offload", "unsloth"),
)
GC_LEVERS = {"gc-half": {"every_n_layers": 2}, "gc-offload": {"offload": True}, "gpu-checkpoints": {"offload": False}}
GC_LEVERS["dropout-0"] = GC_LEVERS["gpu-checkpoints"]  # dropout 0 alone, whatever the default's offloading
GC_LEVERS["dropout-0-offload"] = GC_LEVERS["gc-offload"]  # the same offloading, with dropout 0
DROPOUT_0 = ("dropout-0", "dropout-0-offload")
LEVER_STAGES = {  # TRL 1.16's DPOTrainer falls back to padding (warns) for padding_free; DPO keeps the SFT adapter's
    "padding-free": ("sft",),
    "no-liger": ("sft",),  # DPO does not use Liger's kernels
    **dict.fromkeys(DROPOUT_0, ("sft",)),
}
MLP = ["gate_proj", "up_proj", "down_proj"]  # with helpers.training.QKVO: PEFT's "all-linear" on a Llama, for Unsloth


def lora_fields(args) -> dict:
    """`SFTSettings` fields of ``--lora-modules`` (none for the project's default shape)."""
    return {} if args.lora_modules == "default" else {"target_modules": args.lora_modules}


def _save(args, side: str, rows: list[dict]) -> None:
    """A worker's rows so far (a side cut off by its time limit keeps them)."""
    print(json.dumps(rows[-1]), flush=True)
    (args.work / f"rows-{side}.json").write_text(json.dumps(rows))


# ---------------------------------------------------------------- preparation (orchestrating process)
def prepare(args) -> dict:
    """Model folder, tokenizer, SFT adapter (for the project's DPO) and the rendered SFT / DPO rows as JSON."""
    import train_speed as ts

    from helpers import data, models, pairs, prompts

    tok = models.load_tokenizer(args.tokenizer)
    base = ts.random_llama(
        args.work / ("tiny-llama-random" if args.tiny else "llama-3.2-1b-random"),
        tok,
        ts.TINY if args.tiny else ts.LLAMA_32_1B,
    )
    most = max(args.steps, args.dpo_steps)
    records = data.load_ecqa(args.data, train_sample_size=most * 16, seed=0)["train"]
    sft_rows = [prompts.to_prompt_completion(tok, r) for r in records.select(range(args.steps * 16))]
    pair_rows = pairs.build_offline_pairs(tok, records.select(range(most * 8)), seed=0)[: args.dpo_steps * 8]
    (args.work / "sft.json").write_text(json.dumps(sft_rows))
    (args.work / "dpo.json").write_text(
        json.dumps([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pair_rows])
    )
    if "dpo" in args.stages:  # the adapter DPO starts from, made as train_speed makes it
        ts.sft_adapter_for_dpo(args.work, base, records, tok, **lora_fields(args))
    return dict(base=str(base), eos=tok.eos_token, pad=tok.pad_token)


# ---------------------------------------------------------------- the project's path (+ one lever)
def project_worker(args, side: str, info: dict) -> list[dict]:
    """`train_speed.run_one` at the defaults; a lever is set on the TRL config that `helpers.training` builds."""
    import train_speed as ts
    from datasets import Dataset

    from helpers import data, models, training
    from helpers.settings import SFTSettings

    if side != "project":
        sft_config, dpo_config = training.sft_config, training.dpo_config

        def lever(cfg):
            if side == "padding-free":
                cfg.padding_free, cfg.max_length = True, None  # TRL refuses max_length without packing
            elif side == "liger":
                cfg.use_liger_kernel = True
            elif side == "no-liger":
                cfg.use_liger_kernel = False
            elif side in GC_LEVERS:  # the Trainer reads these two keys itself (transformers >= 5.17)
                cfg.gradient_checkpointing_kwargs = {**(cfg.gradient_checkpointing_kwargs or {}), **GC_LEVERS[side]}
            return cfg

        training.sft_config = lambda s, eos_token=None: lever(sft_config(s, eos_token=eos_token))
        training.dpo_config = lambda s: lever(dpo_config(s))
    if side == "fp16-nocast":  # PEFT casts each LoRA layer's input to its fp32 weights; autocast casts it back
        from peft.helpers import disable_input_dtype_casting

        keep_fp32 = training.keep_adapter_fp32_for_fp16

        def keep_fp32_no_input_cast(trainer):
            keep_fp32(trainer)
            disable_input_dtype_casting(trainer.model).__enter__()  # stays off for this process's trainings

        training.keep_adapter_fp32_for_fp16 = keep_fp32_no_input_cast
    if side == "cudnn-attn":  # every SDPA backend, cuDNN's too: PyTorch's own choice, the default before 2026-11-28
        training.TRAINING_ATTENTION = training.SDPA_BACKENDS
    dropout = {"lora_dropout": 0.0} if side in DROPOUT_0 else {}  # Unsloth's setting (its fast-LoRA path needs it)
    ts.CONFIGS["sft"]["default"] = {**ts.CONFIGS["sft"]["default"], **lora_fields(args), **dropout}
    tok = models.load_tokenizer(args.tokenizer)
    records = data.load_ecqa(args.data, train_sample_size=max(args.steps, args.dpo_steps) * 16, seed=0)["train"]
    pair_ds = Dataset.from_list(json.loads((args.work / "dpo.json").read_text()))
    rows = []
    for stage in args.stages:
        if stage not in LEVER_STAGES.get(side, ("sft", "dpo")):
            continue
        for precision in args.precision:
            steps = args.steps if stage == "sft" else args.dpo_steps
            row = ts.run_one(stage, "default", precision, Path(info["base"]), args.work, records, pair_ds, steps, tok)
            row["config"], row["lora_modules"] = side, SFTSettings(**lora_fields(args)).target_modules
            shape = ts.CONFIGS["sft"]["default"] if stage == "sft" else lora_fields(args)  # DPO: prepare's adapter
            row["lora_dropout"] = SFTSettings(**shape).lora_dropout
            rows.append(row)
            _save(args, side, rows)
    return rows


# ---------------------------------------------------------------- Unsloth
def unsloth_worker(args, info: dict) -> list[dict]:
    """Unsloth's FastLanguageModel + TRL trainers (as Unsloth patches them), same data, batch and LoRA shape."""
    import unsloth  # noqa: I001  (first, as Unsloth asks: it patches transformers, peft and trl on import)
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    import train_speed as ts

    from helpers.settings import SFTSettings
    from helpers.training import QKVO, release_optimizer_overrides

    LORA = SFTSettings(**lora_fields(args))  # the project's LoRA shape (default or --lora-modules), on every side
    rows = []
    for stage in args.stages:
        for precision in args.precision:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
            steps = args.steps if stage == "sft" else args.dpo_steps
            torch.cuda.reset_peak_memory_stats()
            before = ts._allocated_gib()
            model, tok = FastLanguageModel.from_pretrained(
                info["base"], max_seq_length=512, dtype=dtype, load_in_4bit=True
            )
            tok.eos_token, tok.pad_token = info["eos"], info["pad"]  # as helpers.models.load_tokenizer sets them
            model = FastLanguageModel.get_peft_model(
                model,
                r=LORA.lora_r,
                lora_alpha=LORA.lora_alpha,
                lora_dropout=0.0,
                target_modules=QKVO if LORA.target_modules == "qkvo" else [*QKVO, *MLP],
                bias="none",
                use_gradient_checkpointing="unsloth",
                random_state=0,
            )
            common = dict(
                output_dir=str(args.work / "unsloth" / f"{stage}-{precision}"),
                max_steps=steps,
                lr_scheduler_type="cosine",
                warmup_steps=0,
                optim="paged_adamw_8bit",
                bf16=precision == "bf16",
                fp16=precision == "fp16",
                logging_steps=5,
                save_strategy="no",
                report_to="none",
                max_length=512,
                include_num_input_tokens_seen="non_padding",
                seed=42,
                dataloader_num_workers=0,
            )
            clock = ts.StepClock(f"{stage}-unsloth-{precision}")
            start = time.perf_counter()
            if stage == "sft":
                ds = Dataset.from_list(json.loads((args.work / "sft.json").read_text()))
                cfg = SFTConfig(
                    **common,
                    per_device_train_batch_size=16,
                    gradient_accumulation_steps=1,
                    learning_rate=2e-4,
                    train_sampling_strategy="group_by_length",
                    completion_only_loss=True,
                    packing=False,
                    eos_token=info["eos"],
                )
                trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[clock])
            else:
                ds = Dataset.from_list(json.loads((args.work / "dpo.json").read_text()))
                cfg = DPOConfig(
                    **common,
                    per_device_train_batch_size=8,
                    gradient_accumulation_steps=1,
                    learning_rate=5e-5,
                    beta=0.1,
                )
                trainer = DPOTrainer(
                    model=model, ref_model=None, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[clock]
                )
            try:
                trainer.train()
            finally:  # as the project's training does: bitsandbytes' manager would keep the embedding alive
                release_optimizer_overrides(trainer.model)
            trainer.save_model(common["output_dir"])
            torch.cuda.synchronize()
            wall = time.perf_counter() - start
            tokens = clock.marks[-1][1] if clock.marks else 0
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            row = dict(
                stage=stage,
                config="unsloth",
                lora_modules=LORA.target_modules,
                dtype=precision,
                tokens_per_s=round(tokens / wall, 1),
                steady_tokens_per_s=round(clock.steady_rate() or 0.0, 1),
                peak_gib=round(ts._peak_gib(), 2),
                allocated_before_gib=round(before, 2),
                seconds=round(wall, 1),
                tokens=tokens,
                steps=steps,
                micro_batch=cfg.per_device_train_batch_size,
                grad_accum=1,
                gradient_checkpointing="unsloth",
                lora_dropout=0.0,
                first_loss=round(losses[0], 3) if losses else None,
                final_loss=round(losses[-1], 3) if losses else None,
                unsloth=unsloth.__version__,
                trl=__import__("trl").__version__,
                padding_free=getattr(trainer.args, "padding_free", None),
            )
            rows.append(row)
            _save(args, "unsloth", rows)
            del model, trainer
            gc.collect()
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------- orchestration
def run_side(args, side: str, seconds: float, phase: str = "timed") -> list[dict]:
    """One side in its own process (at most ``seconds``); a failure becomes a row carrying the error's last lines.
    ``phase`` "warmup": the same rows for ``--warmup-steps`` steps each; "profile": for the steady-state rate's
    warm-up steps then ``--profile-steps`` steps under torch.profiler, a table per row in
    ``<--out>/profile-<tag>/<side>/`` (train_speed.StepClock); "memory": ``--memory-steps`` steps with the GPU's
    allocations recorded, a summary of each row's peak in ``<--work>/memory-<tag>/<side>/``. Each is logged to
    log-<side>-<phase>.txt and keeps no rows."""
    import train_speed as ts

    out = args.work / f"rows-{side}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ)
    if side == "unsloth" and args.unsloth_site:
        env["PYTHONPATH"] = os.pathsep.join([args.unsloth_site, *args.site_after])
    cmd = [sys.executable, __file__, "--worker", side, *sys.argv[1:]]
    if phase == "warmup":  # the last occurrence of an option wins
        cmd += ["--steps", str(args.warmup_steps), "--dpo-steps", str(args.warmup_steps)]
    elif phase == "profile":  # no more steps than the timed rows: their data is all there is
        profiled = ts.WARMUP_STEPS + args.profile_steps
        cmd += ["--steps", str(min(profiled, args.steps)), "--dpo-steps", str(min(profiled, args.dpo_steps))]
        env[ts.PROFILE_ENV] = str(args.out / f"profile-{args.tag}" / side)
    elif phase == "memory":
        cmd += ["--steps", str(min(args.memory_steps, args.steps))]
        cmd += ["--dpo-steps", str(min(args.memory_steps, args.dpo_steps))]
        env[ts.MEMORY_ENV] = str(args.work / f"memory-{args.tag}" / side)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(seconds, 1), check=False)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        stdout, stderr, code = (
            _text(e.stdout),
            _text(e.stderr) + f"\ntime limit: stopped after {seconds:.0f} s",
            "timeout",
        )
    (args.work / f"log-{side}{'' if phase == 'timed' else '-' + phase}.txt").write_text(
        stdout + "\n---- stderr\n" + stderr
    )
    tail = [line for line in stderr.strip().splitlines() if line.strip() and "it/s]" not in line][-12:]
    if phase != "timed":  # a failure is printed (a profile run's is nowhere else), its rows are not kept
        failed = f", FAILED ({code}): {tail[-1] if tail else ''}" if code != 0 else ""
        print(f"{side}: {phase} in {time.perf_counter() - start:.0f} s{failed}", flush=True)
        return []
    rows = json.loads(out.read_text()) if out.is_file() else []
    if code != 0:
        rows.append(dict(stage="*", config=side, dtype="*", failed=True, returncode=code, error=tail))
        print(f"{side} FAILED ({code}):\n  " + "\n  ".join(tail), flush=True)
    print(f"{side}: {len(rows)} rows in {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", nargs="+", default=["project", "unsloth"], choices=SIDES)
    parser.add_argument("--stages", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=24, help="SFT optimizer steps per configuration")
    parser.add_argument("--dpo-steps", type=int, default=16, help="DPO optimizer steps per configuration")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=3,
        help="first, untimed: the first side and unsloth run their rows this many steps (0: none); see NOTES.md",
    )
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=0,
        help="last, untimed: each side runs its rows again, these steps after the warm-up ones (at most the timed "
        "rows' steps in all) under torch.profiler (tables in <--out>/profile-<tag>/<side>/)",
    )
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=0,
        help="last, untimed, GPU only: each side runs its rows again for this many steps with its GPU allocations "
        "recorded; what was alive at the peak goes to <--out>/memory-<tag>/<side>/ (benchmarks/memory_peak.py)",
    )
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="stand-in tokenizer: preset or folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/peers"))
    parser.add_argument("--unsloth-site", default="", help="folder put first on the Unsloth process's path")
    parser.add_argument("--site-after", nargs="*", default=[], help="folders after it (bitsandbytes, ...)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=3600,
        help="seconds for the whole run; the side running then is "
        "stopped (keeping its rows so far) and later sides are skipped",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tag", default="peers")
    parser.add_argument(
        "--lora-modules",
        default="default",
        choices=["default", "qkvo", "all-linear"],
        help="LoRA on these layers on every side (r, alpha: the defaults); qkvo leaves out Unsloth's fused MLP path",
    )
    parser.add_argument("--tiny", action="store_true", help="toy model on CPU (project-side levers only)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    info_path = args.work / "info.json"
    if args.worker:
        info = json.loads(info_path.read_text())
        unsloth_worker(args, info) if args.worker == "unsloth" else project_worker(args, args.worker, info)
        return
    import torch

    if not torch.cuda.is_available() and not args.tiny:
        raise SystemExit(
            "this benchmark needs a CUDA GPU (4-bit NF4 through bitsandbytes); --tiny runs a toy model on CPU"
        )
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    info = prepare(args)
    info_path.write_text(json.dumps(info))
    print(f"prepared in {time.perf_counter() - t0:.0f} s on {card}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dt.date.today().isoformat()}-{card.replace(' ', '-')}-{args.tag}.json"
    versions = {m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft")}
    rows: list[dict] = []
    # A side that ran first on a freshly started machine measured ~1.5x slower than the same work run after it
    # (benchmarks/NOTES.md, 2026-11-28): one-time costs (kernel compilation cached on disk, the GPU's clocks) land on
    # whoever comes first. So the first side, and Unsloth (its own kernels), run once briefly before anything is timed.
    warm = dict.fromkeys(s for s in args.sides if s in (args.sides[0], "unsloth")) if args.warmup_steps > 0 else {}
    for side in warm:  # each once, in the order named
        run_side(args, side, args.deadline - (time.perf_counter() - t0), phase="warmup")
    for position, side in enumerate(args.sides):  # a side named twice runs twice (A-B-A shows an order effect)
        left = args.deadline - (time.perf_counter() - t0)
        if left < 20:
            print(f"{side}: skipped, {left:.0f} s left of --deadline", flush=True)
            continue
        for row in run_side(args, side, left):
            rows.append(
                {
                    **row,
                    "card": card,
                    "versions": versions if row["config"] != "unsloth" else None,
                    "warmup_steps": max(args.warmup_steps, 0),
                    "position": position,
                }
            )
        path.write_text(json.dumps(rows, indent=1) + "\n")  # after every side: a cut-off run keeps its rows
    for side in dict.fromkeys(args.sides) if args.profile_steps > 0 else ():  # after the timed rows: no effect on them
        left = args.deadline - (time.perf_counter() - t0)
        if left >= 20:
            run_side(args, side, left, phase="profile")
    for side in dict.fromkeys(args.sides) if args.memory_steps > 0 else ():  # last: recording slows every step
        left = args.deadline - (time.perf_counter() - t0)
        if left >= 20:
            run_side(args, side, left, phase="memory")
            texts = sorted((args.work / f"memory-{args.tag}" / side).glob("*.txt"))  # the pickles stay in --work
            to = args.out / f"memory-{args.tag}" / side
            if texts:
                to.mkdir(parents=True, exist_ok=True)
            for text in texts:
                shutil.copy(text, to / text.name)
    print(
        f"\n{'stage':5} {'dtype':5} {'side':13} {'tok/s':>8} {'steady':>8} {'steady x project':>16} {'peak GiB':>8}"
        f" {'before':>6}  [{card}]"
    )
    for r in rows:
        if r.get("failed"):
            print(f"{'*':5} {'*':5} {r['config']:13} FAILED: {r['error'][-1][:90]}")
            continue
        ref = next(
            (p for p in rows if (p["stage"], p["dtype"], p["config"]) == (r["stage"], r["dtype"], "project")), None
        )
        ratio = (
            r["steady_tokens_per_s"] / ref["steady_tokens_per_s"]
            if ref and ref["steady_tokens_per_s"]
            else float("nan")
        )
        print(
            f"{r['stage']:5} {r['dtype']:5} {r['config']:13} {r['tokens_per_s']:8.0f} {r['steady_tokens_per_s']:8.0f} "
            f"{ratio:16.2f} {r['peak_gib']:8.2f} {r.get('allocated_before_gib', 0.0):6.2f}"
        )
    print(f"rows written to {path}")


if __name__ == "__main__":
    main()

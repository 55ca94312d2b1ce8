"""Training speed and memory at Llama-3.2-1B shape, through the project's own training code.

    python benchmarks/train_speed.py --stages sft dpo --precision bf16 fp16 --configs seed default

A `LlamaConfig` with Llama-3.2-1B's published dimensions and random weights (same FLOPs and memory
as the real model; the real weights cannot be downloaded here) is saved once, loaded 4-bit NF4 by
`helpers.models.load_model`, and trained by `helpers.training.train_sft` / `train_dpo` on real
ECQA records rendered in the project's prompt format, so sequence lengths follow the real
prompt+completion distribution (the SmolLM2 tokenizer stands in for Llama's). Each configuration
(`CONFIGS`) runs a fixed number of optimizer steps at its stage's effective batch on a freshly
loaded model. ``tokens_per_s`` is non-padding tokens over the whole training call (trainer set-up,
DPO's reference pass, training and saving); ``steady_tokens_per_s`` leaves out the first
optimizer steps. Prints one row per (stage, precision, config), with ratios to the seed's
configuration, and writes them to benchmarks/results/<date>-<card>[-tag].json after every row.
Needs a CUDA GPU and bitsandbytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import resource
import shutil
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from helpers import data, models, pairs, training
from helpers.settings import DPOSettings, SFTSettings

LLAMA_32_1B = dict(
    vocab_size=128256,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    hidden_act="silu",
    rope_parameters={
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
)
# Configurations per stage: settings fields on top of the stage's defaults, one lever changed at a time
# (benchmarks/NOTES.md has each lever's prediction and result). "seed" is the original design's;
# "default" is whatever SFTSettings / DPOSettings default to now. Every configuration keeps the
# stage's effective batch (SFT 16, DPO 8), so the optimisation itself is unchanged.
SEED_SFT = {
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 16,
    "gradient_checkpointing": True,
    "group_by_length": False,
}
SEED_DPO = {
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
    "precompute_ref_log_probs": False,
}


def _cfg(base: dict, micro: int, accum: int, **levers) -> dict:
    """``base`` with micro-batch x accumulation (same product as the seed's) and any other levers."""
    return {**base, "per_device_train_batch_size": micro, "gradient_accumulation_steps": accum, **levers}


CONFIGS: dict[str, dict[str, dict]] = {
    "sft": {
        "seed": SEED_SFT,
        "b16": _cfg(SEED_SFT, 16, 1),
        "b16-grouped": _cfg(SEED_SFT, 16, 1, group_by_length=True),
        "b16-grouped-nogc": _cfg(SEED_SFT, 16, 1, group_by_length=True, gradient_checkpointing=False),
        "b8x2-grouped-nogc": _cfg(SEED_SFT, 8, 2, group_by_length=True, gradient_checkpointing=False),
        "default": {},
        # what each memory saver of the default costs in time (run with --memory-cap-gib 15 for a T4's memory)
        "gc-on-gpu": {"offload_checkpoints": False},
        "nogc": {"gradient_checkpointing": False},
        "nogc-noliger": {"gradient_checkpointing": False, "liger_kernels": False},
    },
    "dpo": {
        "seed": SEED_DPO,
        "b8": _cfg(SEED_DPO, 8, 1),
        "b8-nogc": _cfg(SEED_DPO, 8, 1, gradient_checkpointing=False),
        "b8-nogc-precompute": _cfg(SEED_DPO, 8, 1, gradient_checkpointing=False, precompute_ref_log_probs=True),
        "b4x2-nogc-precompute": _cfg(SEED_DPO, 4, 2, gradient_checkpointing=False, precompute_ref_log_probs=True),
        "default": {},
    },
}
# --tiny: the same code path on a toy model, on CPU too (the benchmark's own smoke test)
TINY = dict(
    LLAMA_32_1B,
    vocab_size=49152,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
)
WARMUP_STEPS = 3  # optimizer steps left out of the steady-state rate


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def _allocated_gib() -> float:
    return torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


PROFILE_ENV = "STEP_PROFILE"  # a folder: StepClock profiles the steps after WARMUP_STEPS, one table per run
MEMORY_ENV = "STEP_MEMORY"  # a folder: StepClock records GPU allocations over the whole run (memory_peak.py)


class StepClock(TrainerCallback):
    """Wall time and tokens seen at every optimizer step (for a steady-state rate after warm-up).

    With ``$STEP_PROFILE`` set to a folder, the steps after the first ``WARMUP_STEPS`` run under
    ``torch.profiler`` and ``<folder>/<label>.txt`` gets its table of the most expensive operations (by
    self time, the device's where there is one): what a side spends its steady steps on. With ``$STEP_MEMORY`` set
    to a folder (and a GPU), every step's allocations are recorded and ``<folder>/<label>-memory.txt`` says what
    was alive at the run's peak, by the code that allocated it (`memory_peak`).
    """

    def __init__(self, label: str = "run") -> None:
        self.marks: list[tuple[float, int]] = []
        folder = os.environ.get(PROFILE_ENV)
        self.profile_to = Path(folder) / f"{label}.txt" if folder else None
        self.profiler: torch.profiler.profile | None = None
        memory = os.environ.get(MEMORY_ENV)
        self.memory_to = Path(memory) / f"{label}-memory" if memory and torch.cuda.is_available() else None
        self.memory_baseline: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.memory_to is not None:
            import memory_peak  # beside this file, as this module is

            self.memory_baseline = memory_peak.record()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        _sync()
        self.marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))
        if self.profile_to is not None and self.profiler is None and len(self.marks) == WARMUP_STEPS:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.memory_to is not None and self.memory_baseline is not None:
            import memory_peak

            print(memory_peak.write(self.memory_to, self.memory_baseline), flush=True)
            self.memory_baseline = None
        if self.profiler is None or self.profile_to is None:
            return
        _sync()
        self.profiler.stop()
        steps, (t0, n0), (t1, n1) = len(self.marks) - WARMUP_STEPS, self.marks[WARMUP_STEPS - 1], self.marks[-1]
        keys = ["self_cuda_time_total"] if torch.cuda.is_available() else []
        averages = self.profiler.key_averages()
        tables = [
            f"sorted by {key}\n{averages.table(sort_by=key, row_limit=30, max_name_column_width=60)}"
            for key in [*keys, "self_cpu_time_total"]  # the device's work, then the host's
        ]
        self.profile_to.parent.mkdir(parents=True, exist_ok=True)
        self.profile_to.write_text(
            f"{steps} profiled steps, {n1 - n0} tokens in {t1 - t0:.2f} s (profiler overhead included)\n"
            + "\n".join(tables)
        )
        self.profiler = None

    def steady_rate(self) -> float | None:
        if len(self.marks) <= WARMUP_STEPS + 1:
            return None
        (t0, n0), (t1, n1) = self.marks[WARMUP_STEPS], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def random_llama(folder: Path, tokenizer, shape: dict = LLAMA_32_1B) -> Path:
    """Save a randomly initialised Llama-3.2-1B-shaped model (bf16) with the stand-in tokenizer."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **shape,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising 1.2B weights on a CPU is slow
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    return folder


LORA_SHAPE = ("target_modules", "lora_r", "lora_alpha")  # SFTSettings fields that make an adapter's shape


def sft_adapter_for_dpo(work: Path, base: Path, records, tokenizer, **shape) -> Path:
    """The SFT adapter DPO starts from: a short SFT (2 steps) of ``base``, made once under ``work`` (again when
    its shape, `LORA_SHAPE` with ``shape``'s overrides, differs from the one made before)."""
    adapter = work / "outputs" / "sft-adapter"
    s = SFTSettings(
        model=str(base),
        root=str(work / "prep"),
        max_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        report_to="none",
        save_steps=10**6,
        **shape,
    )
    made = adapter / "settings.json"
    if made.is_file() and any(json.loads(made.read_text()).get(k) != getattr(s, k) for k in LORA_SHAPE):
        shutil.rmtree(adapter)
    if not models.has_adapter(adapter):
        shutil.rmtree(s.output_dir, ignore_errors=True)
        training.train_sft(s, records.select(range(8)), tokenizer=tokenizer)
        shutil.copytree(s.output_dir, adapter, dirs_exist_ok=True)
    return adapter


def checkpointed_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Decoder layers that recompute their forward (transformers' flag on each)."""
    return [m for m in model.modules() if hasattr(m, "self_attn") and getattr(m, "gradient_checkpointing", False)]


def offloaded_layers(model: torch.nn.Module) -> int:
    """Checkpointed decoder layers whose saved inputs go to host memory (transformers' ``offload=True`` wraps each
    layer's checkpoint function in ``save_on_cpu``): what a row ran, read from the model, not from its settings."""
    n = 0
    for m in checkpointed_layers(model):
        func = getattr(m, "_gradient_checkpointing_func", None)
        code = getattr(getattr(func, "func", func), "__code__", None)
        n += "save_on_cpu" in getattr(code, "co_names", ())
    return n


def run_one(
    stage: str, name: str, precision: str, base: Path, root: Path, records, pair_ds, steps: int, tokenizer
) -> dict:
    """Train one configuration for ``steps`` optimizer steps on a fresh model; its row of results."""
    common = dict(
        model=str(base),
        root=str(root),
        precision=precision,
        report_to="none",
        logging_steps=5,
        save_steps=10**6,
        warmup_ratio=0.0,
        max_steps=steps,
    )
    clock = StepClock(f"{stage}-{name}-{precision}")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    before = _allocated_gib()  # left by earlier rows of this process: in peak_gib too, so a row says how much
    if stage == "sft":
        s = SFTSettings(**common, **CONFIGS["sft"][name])
        shutil.rmtree(s.output_dir, ignore_errors=True)
        model = models.load_model(s.model, precision=precision)
        start = time.perf_counter()
        result = training.train_sft(
            s,
            records.select(range(steps * s.effective_batch_size)),
            model=model,
            tokenizer=tokenizer,
            callbacks=[clock],
        )
    else:
        s = DPOSettings(
            **common,
            **CONFIGS["dpo"][name],
            variant=f"dpo-{name}-{precision}",
            sft_adapter=str(root / "outputs" / "sft-adapter"),
        )
        shutil.rmtree(s.output_dir, ignore_errors=True)
        model = models.load_adapter_model(s.sft_dir, precision=precision, trainable=True)
        start = time.perf_counter()  # includes the reference log-prob pass when it is precomputed
        result = training.train_dpo(
            s,
            pair_ds.select(range(steps * s.effective_batch_size)),
            model=model,
            tokenizer=tokenizer,
            callbacks=[clock],
        )
    wall = time.perf_counter() - start
    tokens = clock.marks[-1][1] if clock.marks else 0
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    embed = model.get_input_embeddings().weight
    row = dict(
        stage=stage,
        config=name,
        dtype=precision,
        tokens_per_s=round(tokens / wall, 1),
        steady_tokens_per_s=round(clock.steady_rate() or 0.0, 1),
        peak_gib=round(_peak_gib(), 2),
        allocated_before_gib=round(before, 2),
        seconds=round(wall, 1),
        tokens=tokens,
        steps=s.max_steps,
        micro_batch=s.per_device_train_batch_size,
        grad_accum=s.gradient_accumulation_steps,
        gradient_checkpointing=s.gradient_checkpointing,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        checkpointed_layers=len(checkpointed_layers(model)),
        offloaded_layers=offloaded_layers(model),
        liger_modules=sum(  # modules whose forward Liger replaced (RMSNorms, MLPs): what ran, read from the model
            getattr(getattr(m.forward, "__func__", m.forward), "__module__", "").startswith("liger_kernel")
            for m in model.modules()
        ),
        group_by_length=s.group_by_length,
        precompute_ref_log_probs=getattr(s, "precompute_ref_log_probs", None),
        embedding_dtype=str(embed.dtype).replace("torch.", ""),
        first_loss=round(losses[0], 3) if losses else None,
        final_loss=round(losses[-1], 3) if losses else None,
        host_max_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    )
    del model, result, embed
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="stand-in tokenizer: preset or folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--stages", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["seed", "default"],
        help=f"names from CONFIGS: sft {sorted(CONFIGS['sft'])}, dpo {sorted(CONFIGS['dpo'])}",
    )
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per configuration")
    parser.add_argument("--seed-steps", type=int, default=12, help="optimizer steps for the (slow) seed configuration")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument(
        "--memory-cap-gib", type=float, default=0, help="cap this process's GPU memory (15: a T4's); 0 = no cap"
    )
    parser.add_argument("--tiny", action="store_true", help="a toy model instead of Llama-3.2-1B's shape; runs on CPU")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.tiny:
        raise SystemExit(
            "this benchmark needs a CUDA GPU (4-bit NF4 through bitsandbytes); --tiny runs a toy model anywhere"
        )
    card = torch.cuda.get_device_name().replace(" ", "-") if torch.cuda.is_available() else "cpu"
    if args.memory_cap_gib and torch.cuda.is_available():  # a row that needs more fails with out-of-memory
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 2**30 / total))
    tok = models.load_tokenizer(args.tokenizer)
    base = random_llama(
        args.work / ("tiny-llama-random" if args.tiny else "llama-3.2-1b-random"),
        tok,
        TINY if args.tiny else LLAMA_32_1B,
    )
    most = max(args.steps, args.seed_steps)
    records = data.load_ecqa(args.data, train_sample_size=most * 16, seed=0)["train"]
    pair_ds = None
    if "dpo" in args.stages:
        sft_adapter_for_dpo(args.work, base, records, tok)
        from datasets import Dataset

        pair_ds = Dataset.from_list(pairs.build_offline_pairs(tok, records.select(range(most * 8)), seed=0))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dt.date.today().isoformat()}-{card}{'-' + args.tag if args.tag else ''}.json"
    rows: list[dict] = []
    for stage in args.stages:
        for precision in args.precision:
            for name in args.configs:
                if name not in CONFIGS[stage]:
                    continue
                steps = args.seed_steps if name == "seed" else args.steps
                row = run_one(stage, name, precision, base, args.work, records, pair_ds, steps, tok)
                seed_row = next(
                    (r for r in rows if (r["stage"], r["dtype"], r["config"]) == (stage, precision, "seed")), None
                )
                if seed_row:
                    row["ratio_to_seed"] = round(row["tokens_per_s"] / seed_row["tokens_per_s"], 2)
                    row["steady_ratio_to_seed"] = round(
                        row["steady_tokens_per_s"] / max(seed_row["steady_tokens_per_s"], 1e-9), 2
                    )
                row["card"] = card
                rows.append(row)
                print(json.dumps(row), flush=True)
                path.write_text(json.dumps(rows, indent=1) + "\n")  # after every row: a cut-off run keeps its rows
    print(
        f"\n{'stage':5} {'dtype':5} {'config':22} {'tok/s':>8} {'x seed':>7} {'steady':>8} {'x seed':>7} {'peak GiB':>8}"  # noqa: E501
    )
    for r in rows:
        print(
            f"{r['stage']:5} {r['dtype']:5} {r['config']:22} {r['tokens_per_s']:8.0f} {r.get('ratio_to_seed', 1):7.2f} "  # noqa: E501
            f"{r['steady_tokens_per_s']:8.0f} {r.get('steady_ratio_to_seed', 1):7.2f} {r['peak_gib']:8.2f}"
        )
    print(f"rows written to {path}")


if __name__ == "__main__":
    main()

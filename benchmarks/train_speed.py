"""Training speed and memory at Llama-3.2-1B shape, through the project's own training code.

    python benchmarks/train_speed.py --precision bf16 fp16 --configs seed default --sequences 480

A `LlamaConfig` with Llama-3.2-1B's published dimensions and random weights (same FLOPs and memory
as the real model; the real weights cannot be downloaded here) is saved once, loaded 4-bit NF4 by
`helpers.models.load_model`, and trained by `helpers.training.train_sft` / `train_dpo` on real
ECQA records rendered in the project's prompt format (so sequence lengths follow the real
prompt+completion distribution; the SmolLM2 tokenizer stands in for Llama's). Each configuration
sees the same number of sequences. Prints one row per (stage, precision, config) and writes them
to benchmarks/results/<date>-<card>.json. Needs a CUDA GPU and bitsandbytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import resource
import shutil
from pathlib import Path

import torch

from helpers import data, models, pairs, training
from helpers.settings import DPOSettings, SFTSettings

LLAMA_32_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
    rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
)
# Configurations: settings fields on top of each stage's defaults. "seed" is the original design's.
CONFIGS: dict[str, dict] = {
    "seed": {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 16, "gradient_checkpointing": True},
    "batch16": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 1, "gradient_checkpointing": True},
    "batch16-grouped": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                        "gradient_checkpointing": True, "group_by_length": True},
    "default": {},  # whatever SFTSettings / DPOSettings default to now
}
DPO_EFFECTIVE = 8  # the seed's DPO effective batch; DPO configs keep it


def random_llama(folder: Path, tokenizer) -> Path:
    """Save a randomly initialised Llama-3.2-1B-shaped model (bf16) with the stand-in tokenizer."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**LLAMA_32_1B, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    gc.collect()
    return folder


def dpo_overrides(cfg: dict) -> dict:
    """A configuration's DPO form: same micro-batch idea, DPO's effective batch of 8."""
    micro = min(cfg.get("per_device_train_batch_size", DPOSettings.per_device_train_batch_size), DPO_EFFECTIVE)
    return {**cfg, "per_device_train_batch_size": micro, "gradient_accumulation_steps": DPO_EFFECTIVE // micro}


def run_one(stage: str, name: str, precision: str, base: Path, root: Path, records, pair_ds, sequences: int) -> dict:
    common = dict(model=str(base), root=str(root), precision=precision, report_to="none", logging_steps=5,
                  save_steps=10**6, warmup_ratio=0.0)
    if stage == "sft":
        s = SFTSettings(**common, **CONFIGS[name])
        s = s.replace(max_steps=max(1, sequences // s.effective_batch_size))
        shutil.rmtree(s.output_dir, ignore_errors=True)
        result = training.train_sft(s, records)
    else:
        s = DPOSettings(**common, **dpo_overrides(CONFIGS[name]), stage=f"dpo-{name}-{precision}",
                        sft_adapter=str(root / "outputs" / "sft-adapter"))
        s = s.replace(max_steps=max(1, sequences // s.effective_batch_size))
        shutil.rmtree(s.output_dir, ignore_errors=True)
        result = training.train_dpo(s, pair_ds)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    row = dict(stage=stage, config=name, dtype=precision, tokens_per_s=round(result.tokens_per_s, 1),
               first_loss=round(losses[0], 3) if losses else None, final_loss=round(losses[-1], 3) if losses else None,
               peak_gib=round(result.peak_gib, 2), seconds=round(result.seconds, 1), steps=s.max_steps,
               micro_batch=s.per_device_train_batch_size, grad_accum=s.gradient_accumulation_steps,
               gradient_checkpointing=s.gradient_checkpointing, group_by_length=s.group_by_length,
               host_max_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))
    gc.collect()
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench"))
    parser.add_argument("--stages", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument("--configs", nargs="+", default=["seed", "default"], choices=sorted(CONFIGS))
    parser.add_argument("--sequences", type=int, default=480, help="sequences (pairs for DPO) per configuration")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU (4-bit NF4 through bitsandbytes)")
    card = torch.cuda.get_device_name().replace(" ", "-")
    tok = models.load_tokenizer("smollm2-135m")
    base = random_llama(args.work / "llama-3.2-1b-random", tok)
    records = data.load_ecqa(args.data, train_sample_size=max(args.sequences, 64), seed=0)["train"]
    pair_ds = None
    if "dpo" in args.stages:  # a short SFT gives the adapter DPO starts from
        s = SFTSettings(model=str(base), root=str(args.work), max_steps=2, per_device_train_batch_size=4,
                        gradient_accumulation_steps=1, report_to="none", save_steps=10**6)
        training.train_sft(s, records.select(range(8)))
        shutil.copytree(s.output_dir, args.work / "outputs" / "sft-adapter", dirs_exist_ok=True)
        from datasets import Dataset

        pair_ds = Dataset.from_list(pairs.build_offline_pairs(tok, records, seed=0))
    rows = []
    for stage in args.stages:
        for precision in args.precision:
            for name in args.configs:
                row = run_one(stage, name, precision, base, args.work, records, pair_ds, args.sequences)
                seed_row = next((r for r in rows if (r["stage"], r["dtype"], r["config"]) == (stage, precision, "seed")), None)
                row["ratio_to_seed"] = round(row["tokens_per_s"] / seed_row["tokens_per_s"], 2) if seed_row else None
                row["card"] = card
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dt.date.today().isoformat()}-{card}.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{'stage':5} {'dtype':5} {'config':16} {'tok/s':>9} {'x seed':>7} {'peak GiB':>8}")
    for r in rows:
        print(f"{r['stage']:5} {r['dtype']:5} {r['config']:16} {r['tokens_per_s']:9.0f} {r['ratio_to_seed'] or 1:7.2f} {r['peak_gib']:8.2f}")
    print(f"rows written to {path}")


if __name__ == "__main__":
    main()

"""The free-Colab T4 run rehearsed at Llama-3.2-1B size on a bigger GPU: fp16, GPU memory capped at 15 GB.

    python scripts/gpu/t4_rehearsal.py --questions 256 --sft-steps 30 --dpo-steps 20

A model built from Llama-3.2-1B's config (random weights, its vocabulary of 128,256, tied embeddings;
`benchmarks/train_speed.random_llama`) runs through the notebooks' own step functions with their default
settings, forced to fp16 (a T4 has no bf16) and 4-bit NF4 (the default on CUDA), in ONE process whose GPU
memory is capped with ``torch.cuda.set_per_process_memory_fraction`` at 15 GB (a T4's memory): SFT for some
steps, on-policy sampling at k=4 for a few hundred questions, DPO for some steps, evaluation of a few hundred
questions in every mode. Random weights never write an end-of-turn token, so every generation runs to its
``max_new_tokens``: the generation rows are an upper bound on time per question. Prints one row per step
(wall time, throughput, peak GPU memory, peak host RSS) and a labelled T4 estimate per notebook for the full
data, and writes them to ``$OUT/t4-rehearsal.json``. The SmolLM2 tokenizer stands in for Llama's
(``--tokenizer``; its ids all fit the 128,256-row embedding).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's benchmarks/ and helpers/
from benchmarks.train_speed import random_llama  # noqa: E402
from helpers import steps  # noqa: E402
from helpers.models import load_tokenizer  # noqa: E402
from helpers.settings import DPOSettings, EvalSettings, PairSettings, SFTSettings  # noqa: E402

T4_GIB = 15.0
# H100 -> T4 scaling for the labelled estimate: training is compute-bound (fp16 tensor peak ~990 vs ~65
# TFLOP/s dense, but the 4-bit kernels keep the H100 far from its peak: the measured ratio of a similar
# workload is used as a range), decoding is memory-bound (3.35 TB/s vs 0.32 TB/s).
SCALE = {"train": (10.0, 15.0), "generate": (8.0, 10.5), "score": (10.0, 15.0)}
FULL = {  # the notebooks' full-data work with the default settings, in the units each row measures
    "03_sft": ("sft", 1_600_000, "tokens (one epoch of 9,126 questions, ~175 tokens each)"),
    "02_pairs": ("pairs", 2_000, "k=4 questions (the default 1,000 questions x 8 samples)"),
    "04_dpo": ("dpo", 280_000, "tokens (~850 pairs from 02, ~330 tokens each)"),
    "05_eval": ("eval", 1_221 * 3, "question-variants (base, SFT, DPO) in the default modes"),
}


def trained(result) -> float:
    """Tokens a training step trained."""
    return result.tokens_per_s * result.seconds


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measured(name: str, fn, units: float, unit: str) -> dict:
    """Run one step; its wall time, rate, peak GPU memory (allocated and reserved) and peak host RSS."""
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    units = units(result) if callable(units) else units
    row = {
        "step": name,
        "seconds": round(seconds, 1),
        "units": units,
        "unit": unit,
        "rate": round(units / seconds, 2),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2),
        "peak_rss_gib": round(rss_gib(), 2),
    }
    if isinstance(getattr(result, "tokens_per_s", None), float):  # training: its trainer's own rate, no loading
        row["train_rate"] = round(result.tokens_per_s, 1)
    print(json.dumps(row), flush=True)
    with open(Path(os.environ.get("OUT", ".")) / "t4-rehearsal-rows.jsonl", "a") as f:  # survives a cut-off call
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--sft-steps", type=int, default=30)
    parser.add_argument("--dpo-steps", type=int, default=20)
    parser.add_argument("--cot-k-questions", type=int, default=24, help="cot@k samples k=8 each: fewer questions")
    parser.add_argument("--tokenizer", default=os.environ.get("STAND_IN_TOKENIZER", "smollm2-135m"))
    parser.add_argument("--root", default="/tmp/t4")
    args = parser.parse_args()
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(min(1.0, T4_GIB / total))
    tok = load_tokenizer(args.tokenizer)
    model_dir = random_llama(Path(args.root) / "llama-3.2-1b-random", tok)
    common = dict(
        model=str(model_dir), data_source=os.environ["ECQA_DATA"], root=args.root, precision="fp16", run_size="full"
    )
    data = steps.load_data(SFTSettings(**common))
    rows = []
    sft = SFTSettings(**common, max_steps=args.sft_steps, save_steps=10**6, report_to="none")
    rows.append(measured("sft", lambda: steps.run_sft(sft, data), trained, "tokens"))
    small = data.copy()
    small["train"] = data["train"].select(range(args.questions))
    pairs = PairSettings(**common, strategy="on_policy")
    rows.append(measured("pairs", lambda: steps.run_pairs(pairs, small), args.questions, "questions (k=4)"))
    dpo = DPOSettings(**common, max_steps=args.dpo_steps, save_steps=10**6, report_to="none")
    rows.append(measured("dpo", lambda: steps.run_dpo(dpo), trained, "tokens"))
    val = data.copy()
    modes = EvalSettings.__dataclass_fields__["modes"].metadata["choices"]
    for mode in sorted(modes, key=lambda m: m == "cot@k"):  # the slowest last: a cut-off call keeps the others
        n = args.cot_k_questions if mode == "cot@k" else args.questions
        ev = EvalSettings(**common, variants=("dpo",), modes=(mode,), sample_size=n)
        rows.append(measured(f"eval {mode}", lambda ev=ev: steps.run_eval(ev, val), n, "questions"))
    result = {
        "device": torch.cuda.get_device_name(),
        "cap_gib": T4_GIB,
        "precision": "fp16",
        "quantize": "4-bit",
        "rows": rows,
        "estimates": estimates(rows),
    }
    out = Path(os.environ.get("OUT", "."))
    (out / "t4-rehearsal.json").write_text(json.dumps(result, indent=1) + "\n")
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    print(pd.DataFrame(result["estimates"]).to_string(index=False))


def estimates(rows: list[dict]) -> list[dict]:
    """A labelled T4 wall-time range per notebook for the full data, from the measured rates."""
    rate = {r["step"]: r.get("train_rate") or r["rate"] for r in rows}  # training: without the model's loading
    default_modes = EvalSettings().modes
    evals = [r for r in rows if r["step"].removeprefix("eval ") in default_modes]
    rate["eval"] = 1 / sum(1 / r["rate"] for r in evals)  # one question through every mode
    out = []
    for notebook, (step, units, what) in FULL.items():
        kind = "train" if step in ("sft", "dpo") else "generate"
        lo, hi = (units / rate[step] * s / 60 for s in SCALE[kind])
        out.append(
            {
                "notebook": notebook,
                "work": f"{units:,} {what}",
                "h100_capped_min": round(units / rate[step] / 60, 1),
                "t4_estimate_min": f"{lo:.0f}-{hi:.0f}",
            }
        )
    return out


if __name__ == "__main__":
    main()

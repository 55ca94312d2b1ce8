"""The free-Colab T4 run rehearsed at Llama-3.2-1B size on a bigger GPU: fp16, GPU memory capped at 15 GB, and a
labelled T4 estimate per notebook for the quick and the full path.

    python scripts/gpu/t4_rehearsal.py --questions 256 --sft-steps 30 --dpo-steps 20

A model built from Llama-3.2-1B's config (random weights, its vocabulary of 128,256, tied embeddings;
`benchmarks/train_speed.random_llama`) runs through the notebooks' own step functions with their default settings,
forced to fp16 (a T4 has no bf16), in ONE process whose GPU memory is capped with
``torch.cuda.set_per_process_memory_fraction`` at 15 GB (a T4's memory): SFT for some steps, on-policy sampling for a
few hundred questions, DPO for some steps, evaluation of a few hundred questions in every mode. Random weights never
write an end-of-turn token, so every generation runs to its ``max_new_tokens``. Prints one row per step (wall time,
throughput, peak GPU memory, peak host RSS) and writes them with the estimates to ``$OUT/t4-rehearsal.json``.

The estimate (`estimates`; benchmarks/NOTES.md states the model): generation on a T4 takes, per new token, the T4's
bound for 256 sequences decoding together (`benchmarks/generation_1b.bound`) plus the host time per token measured
here (this card's time per token less its own bound, never below 0), for answers of the published SFT's mean length
(64 tokens); training and scoring scale this card's time by the fp16 tensor peaks' ratio, as a range (10-15x: the
4-bit kernels keep a big card far from its peak). The work of each path comes from the settings at that run size
(`helpers.presets.RUN_SIZES`). The SmolLM2 tokenizer stands in for Llama's (``--tokenizer``; its ids all fit the
128,256-row embedding).
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
from helpers import generation, steps  # noqa: E402
from helpers.models import load_tokenizer  # noqa: E402
from helpers.settings import DPOSettings, EvalSettings, PairSettings, SFTSettings  # noqa: E402

T4_GIB = 15.0
SCALE = (10.0, 15.0)  # training and scoring: this card's time x this range (see the module docstring)
ANSWER_TOKENS = 64  # the published SFT's mean greedy CoT answer (python scripts/token_budget.py assets/results)
TOKENS = {"sft": 175, "dpo": 330}  # mean tokens of an SFT example and of a DPO pair (prompt + both sides)
CONCURRENCY = 256  # sequences decoding together in the bound


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
    os.environ[generation.MEMORY_CAP_ENV] = str(T4_GIB)  # continuous batching sizes its cache within the cap
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
    k = pairs.samples_per_question
    rows.append(measured("pairs", lambda: steps.run_pairs(pairs, small), args.questions, f"questions (k={k})"))
    rows[-1]["new_tokens"] = args.questions * k * pairs.max_new_tokens  # random weights: every sample full length
    dpo = DPOSettings(**common, max_steps=args.dpo_steps, save_steps=10**6, report_to="none")
    rows.append(measured("dpo", lambda: steps.run_dpo(dpo), trained, "tokens"))
    val = data.copy()
    modes = EvalSettings.__dataclass_fields__["modes"].metadata["choices"]
    for mode in sorted(modes, key=lambda m: m == "cot@k"):  # the slowest last: a cut-off call keeps the others
        n = args.cot_k_questions if mode == "cot@k" else args.questions
        ev = EvalSettings(**common, variants=("dpo",), modes=(mode,), sample_size=n)
        rows.append(measured(f"eval {mode}", lambda ev=ev: steps.run_eval(ev, val), n, "questions"))
        if mode == "cot":
            rows[-1]["new_tokens"] = n * ev.max_new_tokens
    result = {
        "device": torch.cuda.get_device_name(),
        "cap_gib": T4_GIB,
        "precision": "fp16",
        "training": "4-bit QLoRA; generation and scoring from the merged fp16 model (continuous batching)",
        "rows": rows,
        "estimates": estimates(rows, len(data["train"])),
    }
    out = Path(os.environ.get("OUT", "."))
    (out / "t4-rehearsal.json").write_text(json.dumps(result, indent=1) + "\n")
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))
    print(pd.DataFrame(result["estimates"]).to_string(index=False))


def path_work(run_size: str, train_questions: int) -> dict[str, dict[str, float]]:
    """What each notebook does on one path: tokens trained, answers generated, questions scored."""
    sft, pairs = SFTSettings(run_size=run_size), PairSettings(run_size=run_size)
    dpo, ev = DPOSettings(run_size=run_size), EvalSettings(run_size=run_size)
    n_sft = min(sft.train_sample_size or train_questions, train_questions)
    n_pairs = min(pairs.train_sample_size or train_questions, train_questions)
    n_eval = ev.sample_size or 1_221
    n_compare = dpo.compare_questions or 1_221
    kept = 0.85 * n_pairs * (1 - dpo.eval_fraction)  # pairs: the published run kept 832 of 1,000 questions
    variants = len(ev.variants)
    return {
        "03_sft": {"train": n_sft * TOKENS["sft"] * sft.num_train_epochs},
        "02_pairs": {"generate": n_pairs * pairs.samples_per_question * ANSWER_TOKENS},
        "04_dpo": {"train": kept * TOKENS["dpo"] * dpo.num_train_epochs, "generate": 2 * n_compare * ANSWER_TOKENS},
        "05_eval": {"generate": variants * n_eval * ANSWER_TOKENS, "score": variants * n_eval},
    }


def estimates(rows: list[dict], train_questions: int) -> list[dict]:
    """A labelled T4 wall-time range per notebook and path, from the measured rows (see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import generation_1b as g
    from transformers import LlamaConfig

    from benchmarks.train_speed import LLAMA_32_1B

    params, kv, attn = g.model_figures(LlamaConfig(**LLAMA_32_1B))
    context = 160 + ANSWER_TOKENS / 2

    def bound(card: str) -> float:
        return g.bound(CONCURRENCY, context, params, kv * 2, 2, attn, g.card_figures(card))

    by = {r["step"]: r for r in rows}
    train_s = sum(by[k]["seconds"] for k in ("sft", "dpo")) / sum(by[k]["units"] for k in ("sft", "dpo"))
    gen = [by["pairs"], by["eval cot"]]
    here = bound(torch.cuda.get_device_name()) if g.card_figures(torch.cuda.get_device_name()) else float("inf")
    per_token = sum(r["seconds"] for r in gen) / sum(r["new_tokens"] for r in gen)
    host = max(0.0, per_token - 1 / here)
    t4_token = 1 / bound("T4") + host
    score_s = sum(by[f"eval {m}"]["seconds"] / by[f"eval {m}"]["units"] for m in ("cloze", "letter"))
    out = []
    for run_size in ("quick", "full"):
        for notebook, work in path_work(run_size, train_questions).items():
            fixed = work.get("generate", 0) * t4_token
            lo = fixed + (work.get("train", 0) * train_s + work.get("score", 0) * score_s) * SCALE[0]
            hi = fixed + (work.get("train", 0) * train_s + work.get("score", 0) * score_s) * SCALE[1]
            out.append(
                {
                    "notebook": notebook,
                    "run_size": run_size,
                    "work": {k: round(v) for k, v in work.items()},
                    "t4_estimate_min": f"{lo / 60:.0f}-{hi / 60:.0f}",
                    "t4_ms_per_new_token": round(1000 * t4_token, 3),
                    "host_ms_per_new_token": round(1000 * host, 3),
                }
            )
    return out


if __name__ == "__main__":
    main()

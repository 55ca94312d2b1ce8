"""Generation at Llama-3.2-1B shape against the card's bound: on-policy sampling and greedy CoT evaluation.

    python benchmarks/generation_1b.py --precision fp16 bf16 --tokenizer TOKENIZER_FOLDER --data ECQA_FOLDER

    python benchmarks/generation_1b.py --tiny   # CPU smoke run, toy model

The model is a random Llama-3.2-1B-shaped `LlamaConfig` (`train_speed.LLAMA_32_1B`) with a LoRA adapter of the
default shape (`SFTSettings`; PEFT's initialisation: B = 0, so it changes no output but costs its compute), loaded
as the project loads an SFT adapter (`helpers.models.load_adapter_model`). Each row is one path, on the same prompts:

* ``4bit-generate``: 4-bit NF4 base with the LoRA beside it, ``model.generate`` with the static cache on batches of
  ``--batch`` sequences (the project's generation before continuous batching);
* ``merged-generate``: the adapter merged into the fp16/bf16 base, the same ``generate`` engine;
* ``merged-compiled``: the same with ``generate``'s own ``torch.compile`` of the static-cache decode step;
* ``merged-continuous``: the merged model through `helpers.generation`'s ``continuous`` engine (transformers'
  continuous batching: paged cache, finished slots refilled, a prompt's prefill shared by its samples), at most
  ``--batch`` sequences decoding together; each row includes the manager's start (cache allocation, warm-up);
* ``merged-continuous-graphs``: the same with CUDA graphs forced on (transformers leaves them off for SDPA's paged
  attention, which needs a mask).

Two stages at the project's settings (`PairSettings`, `EvalSettings`): ``sampling`` (k samples per question at T=0.9,
160 new tokens) and ``cot-eval`` (greedy, 192 new tokens). Random weights almost never write eos and a real model
stops at different points, so every sequence is forced to ``max_new_tokens`` (``ignore_eos``): the rows are per
generated token at full length.

Every row carries ``tokens_per_s`` (new tokens a second), ``ms_per_step`` (wall time per decode step of a full batch:
seconds / (batches x new tokens)) and ``bound_tokens_per_s``, what the card could do for that batch (`bound`):
the formula is in benchmarks/NOTES.md. Rows go to benchmarks/results/<date>-<card>-generation-bound.json; a short
table is printed last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import train_speed as ts  # noqa: E402 - benchmarks/ and the repository go on the path first

from helpers import data, generation, models, prompts, training  # noqa: E402
from helpers.settings import EvalSettings, PairSettings, SFTSettings  # noqa: E402

PAIRS, EVAL = PairSettings(), EvalSettings()
# stage -> (samples per question, temperature, max new tokens), the project's defaults
STAGES = {
    "sampling": (PAIRS.samples_per_question, PAIRS.temperature, PAIRS.max_new_tokens),
    "cot-eval": (1, 0.0, EVAL.max_new_tokens),
}
PATHS = ("4bit-generate", "merged-generate", "merged-continuous", "merged-continuous-graphs", "merged-compiled")
# Published dense fp16/bf16 tensor-core peak (FLOP/s) and memory bandwidth (bytes/s) of the cards this runs on
CARDS = {
    "H100": (989e12, 3.35e12),  # H100 SXM5 80GB
    "H200": (989e12, 4.8e12),
    "A100": (312e12, 2.04e12),  # A100 SXM 80GB
    "L4": (121e12, 0.3e12),
    "T4": (65e12, 0.32e12),
}


def card_figures(name: str) -> tuple[float, float] | None:
    """(peak FLOP/s, bytes/s) of a card named like ``torch.cuda.get_device_name()``; None if not listed."""
    return next((v for k, v in CARDS.items() if k in name.upper()), None)


def bound(
    batch: int, context: float, params: int, kv_bytes_per_token: int, dtype_bytes: int, flops_attn_per_token: int, card
) -> float:
    """New tokens a second the card could decode for ``batch`` sequences at mean ``context`` tokens (roofline).

    One decode step reads every weight once and each sequence's KV cache, and computes 2 FLOPs per parameter per
    sequence plus attention over the context: time = max(bytes / bandwidth, FLOPs / peak); the bound is batch / time.
    """
    flops_peak, bandwidth = card
    read = params * dtype_bytes + batch * context * kv_bytes_per_token
    flops = batch * (2 * params + flops_attn_per_token * context)
    return batch / max(read / bandwidth, flops / flops_peak)


def model_figures(config) -> tuple[int, int, int]:
    """(decode-matmul parameters, KV cache bytes per token per dtype byte, attention FLOPs per context token)."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    layers, kv_heads, heads = config.num_hidden_layers, config.num_key_value_heads, config.num_attention_heads
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    per_layer = h * heads * head_dim * 2 + h * kv_heads * head_dim * 2 + 3 * h * i  # q, o, k, v, gate/up/down
    params = layers * per_layer + v * h  # the LM head (tied or not, one vocab x hidden matmul a token)
    return params, 2 * layers * kv_heads * head_dim, 4 * layers * heads * head_dim


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_adapter(base: Path, folder: Path, tok) -> Path:
    """A LoRA adapter of the project's shape on ``base``, saved as a stage would save it (settings.json beside it)."""
    if models.has_adapter(folder):
        return folder
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    s = SFTSettings(model=str(base))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16), training.lora_config(s))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    s.to_json(folder / "settings.json")
    del model
    gc.collect()
    return folder


def run_path(path: str, model, tok, texts: list[str], k: int, temperature: float, new: int, batch: int) -> int:
    """Generate for every text along ``path``; returns the new tokens generated."""
    kwargs = dict(max_new_tokens=new, temperature=temperature, num_return_sequences=k, ignore_eos=True, seed=0)
    if path.startswith("merged-continuous"):
        graphs = True if path.endswith("graphs") else None
        gens = generation.generate_all(
            model, tok, texts, engine="continuous", max_sequences=batch, cuda_graphs=graphs, **kwargs
        )
    else:
        extra = {"disable_compile": False} if path == "merged-compiled" else {}
        gens = generation.generate_all(
            model, tok, texts, batch_size=max(1, batch // k), engine="generate", **kwargs, **extra
        )
    return sum(g.new_tokens for _, per_prompt in gens for gs in per_prompt for g in gs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", nargs="+", default=["fp16", "bf16"], choices=["bf16", "fp16"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--batches", type=int, nargs="+", default=[256], help="sequences decoded together")
    parser.add_argument("--full-batches", type=int, default=2, help="a row generates this many full batches")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="override both stages' counts (0: the defaults)")
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="stand-in tokenizer: preset or folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gen1b"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tiny", action="store_true", help="toy model on CPU")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.tiny:
        raise SystemExit("this benchmark needs a CUDA GPU; --tiny runs a toy model on CPU")
    card_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    card = card_figures(card_name)
    size = "toy" if args.tiny else "llama-3.2-1b-shape"
    tok = models.load_tokenizer(args.tokenizer)
    base = ts.random_llama(
        args.work / ("tiny-llama-random" if args.tiny else "llama-3.2-1b-random"),
        tok,
        ts.TINY if args.tiny else ts.LLAMA_32_1B,
    )
    adapter = make_adapter(base, args.work / "adapter", tok)
    records = list(data.load_ecqa(args.data)["validation"].select(range(max(args.batches) * args.full_batches)))
    texts = [prompts.render_prompt(tok, r) for r in records]
    prompt_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts) / len(texts)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{dt.date.today().isoformat()}-{card_name.replace(' ', '-')}-generation-bound.json"
    rows: list[dict] = json.loads(out.read_text()) if out.is_file() else []  # a day's runs on a card add up
    for precision in args.precision:
        for quantized in sorted({p.startswith("4bit") for p in args.paths}, reverse=True):
            if quantized and not torch.cuda.is_available():
                continue  # 4-bit needs bitsandbytes' CUDA kernels
            model = models.load_adapter_model(adapter, precision=precision, quantize=quantized)
            params, kv_per_byte, attn_flops = model_figures(model.config)
            dtype_bytes = 2
            for stage in args.stages:
                k, temperature, new = STAGES[stage]
                new = args.max_new_tokens or new
                for path in [p for p in args.paths if p.startswith("4bit") == quantized]:
                    for batch in args.batches:
                        questions = texts[: max(1, batch * args.full_batches // k)]
                        run_path(path, model, tok, questions[: max(1, batch // k)], k, temperature, 4, batch)  # warm
                        _sync()
                        if torch.cuda.is_available():
                            torch.cuda.reset_peak_memory_stats()
                        start = time.perf_counter()
                        tokens = run_path(path, model, tok, questions, k, temperature, new, batch)
                        _sync()
                        seconds = time.perf_counter() - start
                        sequences = len(questions) * k
                        steps = math.ceil(sequences / batch) * new
                        context = prompt_tokens + new / 2
                        ceiling = (
                            bound(batch, context, params, kv_per_byte * dtype_bytes, dtype_bytes, attn_flops, card)
                            if card
                            else None
                        )
                        row = dict(
                            stage=stage,
                            path=path,
                            dtype=precision,
                            model_size=size,
                            sequences=sequences,
                            k=k,
                            new_tokens_each=new,
                            sequences_per_step=batch,
                            prompt_tokens_mean=round(prompt_tokens, 1),
                            seconds=round(seconds, 2),
                            new_tokens=tokens,
                            tokens_per_s=round(tokens / seconds, 1),
                            ms_per_step=round(1000 * seconds / steps, 2),
                            bound_tokens_per_s=round(ceiling, 1) if ceiling else None,
                            share_of_bound=round(tokens / seconds / ceiling, 3) if ceiling else None,
                            peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2)
                            if torch.cuda.is_available()
                            else 0.0,
                            card=card_name,
                            versions={m: __import__(m).__version__ for m in ("torch", "transformers", "peft")},
                        )
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        out.write_text(json.dumps(rows, indent=1) + "\n")
            del model
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(f"\n{'stage':9} {'path':17} {'dtype':5} {'batch':>5} {'tok/s':>8} {'ms/step':>8} {'bound':>8} {'share':>6}")
    for r in rows[-len(args.precision) * len(args.stages) * len(args.paths) * len(args.batches) :]:
        share = f"{r['share_of_bound']:6.1%}" if r["share_of_bound"] else "     -"
        print(
            f"{r['stage']:9} {r['path']:17} {r['dtype']:5} {r['sequences_per_step']:5d} {r['tokens_per_s']:8.0f} "
            f"{r['ms_per_step']:8.2f} {r['bound_tokens_per_s'] or 0:8.0f} {share}"
        )
    print(f"[{size}, {card_name}] rows written to {out}")


if __name__ == "__main__":
    main()

"""Generation speed at Llama-3.2-1B size: on-policy sampling and greedy CoT evaluation, project path vs plain generate.

    python benchmarks/generation_1b.py --precision bf16 fp16 --models 4bit merged \
        --sampling-questions 16 --eval-questions 64 --tokenizer TOKENIZER_FOLDER --data ECQA_FOLDER

    python benchmarks/generation_1b.py --tiny   # CPU smoke run, toy model

The model is a random Llama-3.2-1B-shaped `LlamaConfig` (`train_speed.LLAMA_32_1B`) with a LoRA
adapter of the default shape (`SFTSettings`; PEFT's initialisation: B = 0, so it changes no output but costs
its compute),
loaded as the project loads an SFT adapter for sampling and evaluation (`helpers.models.load_adapter_model`):
``4bit`` is the default (NF4 base, LoRA beside it), ``merged`` is ``quantize=False`` (bf16/fp16 base with
the adapter merged in). Two stages at the project's settings (`PairSettings`, `EvalSettings`):

* ``sampling``: on-policy pairs, k=8 samples per question (k=4 before the recipe) at T=0.9, 160 new tokens,
  32 sequences per batch;
* ``cot-eval``: greedy chain-of-thought evaluation, 192 new tokens, 32 questions per batch.

``--batches 32 128 256`` measures each stage at those sequences per batch instead of its default (a lever that
changes no sample's distribution, only how many are decoded together).
``--attention pytorch no-cudnn`` measures each row with SDPA's own choice of kernel (``pytorch``: on Hopper cards
cuDNN attention, which plans every new shape on the host) and without cuDNN's (``no-cudnn``: the backends training
uses, `helpers.training.TRAINING_ATTENTION`); the same tokens either way.

Two paths on the same prompts and model object: ``project`` is `helpers.generation.generate_all`
(length-sorted batches, its GPU options: static cache without compile); ``plain`` is ``model.generate``
on consecutive batches with transformers' default dynamic cache. Random weights almost never emit eos,
and a real model stops at different points, so every row is forced to exactly ``max_new_tokens`` new
tokens (``min_new_tokens = max_new_tokens``): the numbers are per generated token at full length, an
upper bound on the time a real run spends. Rows carry stage, model size and card; written to
benchmarks/results/<date>-<card>-generation-1b.json, a short table printed last.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import sdpa_kernel

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import train_speed as ts  # noqa: E402 - benchmarks/ and the repository go on the path first

from helpers import data, generation, models, prompts, training  # noqa: E402
from helpers.settings import EvalSettings, PairSettings, SFTSettings  # noqa: E402

PAIRS, EVAL = PairSettings(), EvalSettings()
# stage -> (samples per question, temperature, max new tokens, sequences per batch), the project's defaults
STAGES = {
    "sampling": (PAIRS.samples_per_question, PAIRS.temperature, PAIRS.max_new_tokens, PAIRS.batch_size),
    "cot-eval": (1, 0.0, EVAL.max_new_tokens, EVAL.batch_size),
}
# the SDPA backends a row may use: PyTorch's own choice (every backend), or training's (all but cuDNN's)
ATTENTION = {"pytorch": training.SDPA_BACKENDS, "no-cudnn": training.TRAINING_ATTENTION}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def make_adapter(base: Path, folder: Path, tok) -> Path:
    """A LoRA adapter of the project's shape on ``base``, saved as a stage would save it (settings.json beside it)."""
    if models.has_adapter(folder):
        return folder
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from helpers import training

    s = SFTSettings(model=str(base))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16), training.lora_config(s))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    s.to_json(folder / "settings.json")
    del model
    gc.collect()
    return folder


def plain(model, tok, texts: list[str], k: int, temperature: float, new: int, batch: int) -> int:
    """``model.generate`` on consecutive batches, dynamic cache; returns generated tokens."""
    tok.padding_side = "left"
    tokens, per = 0, max(1, batch // k)  # ``batch`` counts sequences, as PairSettings.batch_size does
    for start in range(0, len(texts), per):
        enc = tok(texts[start : start + per], return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
        sample = temperature > 0
        out = model.generate(
            **enc,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=1.0 if sample else None,
            top_k=0 if sample else None,
            num_return_sequences=k,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        tokens += (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return tokens


def project(model, tok, texts: list[str], k: int, temperature: float, new: int, batch: int) -> int:
    """`helpers.generation.generate_all` as pairs / evaluation call it; returns generated tokens."""
    tokens = 0
    for _, gens in generation.generate_all(
        model,
        tok,
        texts,
        batch_size=max(1, batch // k),
        max_new_tokens=new,
        min_new_tokens=new,
        temperature=temperature,
        num_return_sequences=k,
    ):
        tokens += sum(g.new_tokens for per_prompt in gens for g in per_prompt)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument("--models", nargs="+", default=["4bit", "merged"], choices=["4bit", "merged"])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--paths", nargs="+", default=["project", "plain"], choices=["project", "plain"])
    parser.add_argument("--sampling-questions", type=int, default=16, help="questions for sampling (x k sequences)")
    parser.add_argument("--eval-questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=0, help="override both stages' counts (0: the defaults)")
    parser.add_argument("--batches", type=int, nargs="*", default=[], help="sequences per batch, else the default")
    parser.add_argument("--attention", nargs="+", default=["pytorch"], choices=list(ATTENTION), help="SDPA backends")
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="stand-in tokenizer: preset or folder")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gen1b"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--tiny", action="store_true", help="toy model on CPU")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.tiny:
        raise SystemExit("this benchmark needs a CUDA GPU; --tiny runs a toy model on CPU")
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    size = "toy" if args.tiny else "llama-3.2-1b-shape"
    tok = models.load_tokenizer(args.tokenizer)
    base = ts.random_llama(
        args.work / ("tiny-llama-random" if args.tiny else "llama-3.2-1b-random"),
        tok,
        ts.TINY if args.tiny else ts.LLAMA_32_1B,
    )
    adapter = make_adapter(base, args.work / "adapter", tok)
    records = data.load_ecqa(args.data)["validation"].select(range(max(args.sampling_questions, args.eval_questions)))
    texts = [prompts.render_prompt(tok, r) for r in records]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dt.date.today().isoformat()}-{card.replace(' ', '-')}-generation-1b.json"
    rows: list[dict] = []
    for precision in args.precision:
        for variant in args.models:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            model = models.load_adapter_model(adapter, precision=precision, quantize=variant == "4bit")
            model.eval()
            with torch.inference_mode():
                project(model, tok, texts[:4], 1, 0.0, 4, 4)  # warm-up (kernels, cuBLAS handles)
                plain(model, tok, texts[:4], 1, 0.0, 4, 4)
                for stage in args.stages:
                    k, temperature, new, default_batch = STAGES[stage]
                    new = args.max_new_tokens or new
                    n = args.sampling_questions if stage == "sampling" else args.eval_questions
                    for batch, attention, name in itertools.product(
                        args.batches or [default_batch], args.attention, args.paths
                    ):
                        fn = project if name == "project" else plain
                        if torch.cuda.is_available():
                            torch.cuda.reset_peak_memory_stats()
                        _sync()
                        start = time.perf_counter()
                        with sdpa_kernel(ATTENTION[attention]):
                            tokens = fn(model, tok, texts[:n], k, temperature, new, batch)
                        _sync()
                        seconds = time.perf_counter() - start
                        row = dict(
                            stage=stage,
                            model_size=size,
                            model=variant,
                            dtype=precision,
                            path=name,
                            questions=n,
                            samples=n * k,
                            k=k,
                            temperature=temperature,
                            new_tokens_each=new,
                            sequences_per_batch=batch,
                            attention=attention,
                            seconds=round(seconds, 2),
                            new_tokens=tokens,
                            samples_per_s=round(n * k / seconds, 2),
                            new_tokens_per_s=round(tokens / seconds, 1),
                            peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2)
                            if torch.cuda.is_available()
                            else 0.0,
                            card=card,
                            forced_length=True,
                            versions={m: __import__(m).__version__ for m in ("torch", "transformers", "peft")},
                        )
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        path.write_text(json.dumps(rows, indent=1) + "\n")
            del model
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    print(
        f"\n{'stage':9} {'model':7} {'dtype':5} {'attention':9} {'path':8} {'samples/s':>9} {'new tok/s':>10} "
        f"{'x plain':>7}  [{size}, {card}]"
    )
    for r in rows:
        ref = next(
            (
                p
                for p in rows
                if p["path"] == "plain"
                and all(p[f] == r[f] for f in ("stage", "model", "dtype", "sequences_per_batch", "attention"))
            ),
            None,
        )
        ratio = r["samples_per_s"] / ref["samples_per_s"] if ref else float("nan")
        print(
            f"{r['stage']:9} {r['model']:7} {r['dtype']:5} {r['attention']:9} {r['path']:8} {r['samples_per_s']:9.2f} "
            f"{r['new_tokens_per_s']:10.0f} {ratio:7.2f}"
        )
    print(f"rows written to {path}")


if __name__ == "__main__":
    main()

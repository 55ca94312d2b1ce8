"""CoT generation speed: the project's batched path vs one question at a time, side by side.

    python benchmarks/generation_speed.py --model smollm2-135m --questions 192 --batch-size 192 \
        --variants project dynamic --step-scaling --profile

Both paths generate greedily for the same validation questions with the same model object and
the same ``max_new_tokens``; the batched path is `helpers.generation.generate_all` (length-sorted
batches, left padding, stop at eos), the baseline calls plain ``model.generate`` per question.
``--variants`` times the batched path with several ``generate`` options (`VARIANTS`), so a lever
is measured next to the current path in the same run. ``--step-scaling`` times one decoding step
at several batch sizes (forced lengths), ``--profile`` prints the top operators of one batched
call. Prints seconds, questions/s and ratios with the card; writes the rows as JSON under
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import torch

from helpers import data, generation, models, prompts

# name -> `generate` keyword arguments of the batched path; "project" is helpers.generation as it is
# (static cache without compile on a GPU: generation.GPU_GENERATE_OPTIONS)
VARIANTS: dict[str, dict] = {
    "project": {},
    "dynamic": {"cache_implementation": "dynamic"},  # transformers' default cache
    "static": {"cache_implementation": "static", "disable_compile": False},  # transformers compiles the decode step
    "static-nocompile": {"cache_implementation": "static", "disable_compile": True},
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def one_at_a_time(model, tok, texts: list[str], max_new_tokens: int) -> tuple[float, int]:
    """Plain ``generate`` per question; returns seconds and generated tokens."""
    start, tokens = time.perf_counter(), 0
    for text in texts:
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    _sync()
    return time.perf_counter() - start, tokens


def batched(model, tok, texts: list[str], max_new_tokens: int, batch_size: int, **kwargs) -> tuple[float, int]:
    """The project's path; returns seconds and generated tokens."""
    _sync()
    start, tokens = time.perf_counter(), 0
    for _, gens in generation.generate_all(
        model, tok, texts, batch_size=batch_size, max_new_tokens=max_new_tokens, **kwargs
    ):
        tokens += sum(g[0].new_tokens for g in gens)
    _sync()
    return time.perf_counter() - start, tokens


def step_scaling(model, tok, texts: list[str], sizes: list[int], steps: int = 48) -> list[dict]:
    """Milliseconds per decoding step at each batch size (every row forced to ``steps`` new tokens)."""
    rows = []
    for size in sizes:
        batch = (texts * (size // len(texts) + 1))[:size]
        times = []
        for n in (1, steps + 1):  # the difference removes the prefill
            _sync()
            t = time.perf_counter()
            generation.generate_batch(model, tok, batch, max_new_tokens=n, min_new_tokens=n)
            _sync()
            times.append(time.perf_counter() - t)
        rows.append({"batch": size, "ms_per_step": round(1000 * (times[1] - times[0]) / steps, 2)})
        print(f"step scaling: batch {size:4d}  {rows[-1]['ms_per_step']:7.2f} ms per decoding step", flush=True)
    return rows


def profile(model, tok, texts: list[str], out: Path) -> None:
    """Top operators of one batched call (by self CUDA time and by self CPU time), also saved to ``out``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=acts) as prof:
        generation.generate_batch(model, tok, texts, max_new_tokens=16, min_new_tokens=16)
        _sync()
    table = prof.key_averages()
    text = ""
    for key in (["self_cuda_time_total"] if torch.cuda.is_available() else []) + ["self_cpu_time_total"]:
        text += f"\n== sorted by {key}\n" + table.table(sort_by=key, row_limit=14, max_name_column_width=60)
    out.write_text(text)
    print(text[-6000:], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="preset, Hub id, model folder or adapter folder")
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--questions", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=192)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--quantize", choices=["auto", "yes", "no"], default="auto")
    parser.add_argument("--variants", nargs="+", default=["project"], choices=sorted(VARIANTS))
    parser.add_argument(
        "--step-scaling",
        type=int,
        nargs="*",
        metavar="BATCH",
        help="time a decoding step at these batch sizes (default 1 16 64 192 384)",
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-single", action="store_true", help="skip the one-at-a-time baseline")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    quantize = {"auto": None, "yes": True, "no": False}[args.quantize]
    if models.has_adapter(args.model):
        model, tok = (
            models.load_adapter_model(args.model, quantize=quantize),
            models.load_tokenizer(models.adapter_base(args.model)),
        )
    else:
        model, tok = models.load_model(args.model, quantize=quantize), models.load_tokenizer(args.model)
    model.eval()
    records = data.load_ecqa(args.data)["validation"].select(range(args.questions))
    texts = [prompts.render_prompt(tok, r) for r in records]
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{card.replace(' ', '-')}-generation-{args.questions}q"
    result: dict = dict(
        model=args.model,
        questions=args.questions,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        quantize=args.quantize,
        card=card,
        torch=torch.__version__,
        transformers=__import__("transformers").__version__,
    )
    with torch.inference_mode():
        batched(model, tok, texts[:8], 8, 8)  # warm-up
        if args.step_scaling is not None:
            result["step_scaling"] = step_scaling(model, tok, texts, args.step_scaling or [1, 16, 64, 192, 384])
        if args.profile:
            profile(model, tok, texts[: args.batch_size], args.out / f"{stem}-profile.txt")
        runs = {}
        for name in args.variants:
            seconds, tokens = batched(model, tok, texts, args.max_new_tokens, args.batch_size, **VARIANTS[name])
            runs[name] = {"batched_s": round(seconds, 2), "batched_tokens": tokens}
            print(f"batched {name:16} {seconds:8.1f} s {tokens:7d} tokens", flush=True)
        if not args.no_single:
            s_s, s_tok = one_at_a_time(model, tok, texts, args.max_new_tokens)
            result.update(single_s=round(s_s, 2), single_tokens=s_tok)
            for run in runs.values():
                run["ratio"] = round(result["single_s"] / run["batched_s"], 1)  # from the row's own seconds
    result["variants"] = runs
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'path':24} {'seconds':>8} {'questions/s':>12} {'tokens':>8} {'ratio':>6}")
    if "single_s" in result:
        print(
            f"{'one at a time':24} {result['single_s']:8.1f} {args.questions / result['single_s']:12.2f}"
            f" {result['single_tokens']:8d}"
        )
    for name, run in runs.items():
        print(
            f"{'batched ' + name:24} {run['batched_s']:8.1f} {args.questions / run['batched_s']:12.2f} "
            f"{run['batched_tokens']:8d} {run.get('ratio', float('nan')):6.1f}"
        )
    print(f"on {card}; written to {path}")


if __name__ == "__main__":
    main()

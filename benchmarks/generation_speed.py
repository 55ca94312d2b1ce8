"""CoT generation speed: the project's batched path vs one question at a time, side by side.

    python benchmarks/generation_speed.py --model smollm2-135m --questions 256 --batch-size 256

Both paths generate greedily for the same validation questions with the same model object and
the same ``max_new_tokens``; the batched path is `helpers.generation.generate_all` (length-sorted
batches, left padding, stop at eos), the baseline calls plain ``model.generate`` per question.
Prints seconds, questions/s and the ratio, with the card; writes a JSON row under
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


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def one_at_a_time(model, tok, texts: list[str], max_new_tokens: int) -> tuple[float, int]:
    """Plain ``generate`` per question; returns seconds and generated tokens."""
    start, tokens = time.perf_counter(), 0
    for text in texts:
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    _sync()
    return time.perf_counter() - start, tokens


def batched(model, tok, texts: list[str], max_new_tokens: int, batch_size: int) -> tuple[float, int]:
    """The project's path; returns seconds and generated tokens."""
    start, tokens = time.perf_counter(), 0
    for _, gens in generation.generate_all(model, tok, texts, batch_size=batch_size, max_new_tokens=max_new_tokens):
        tokens += sum(g[0].new_tokens for g in gens)
    _sync()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="preset, Hub id, model folder or adapter folder")
    parser.add_argument("--data", default="../shared/data/ecqa")
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--quantize", choices=["auto", "yes", "no"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    quantize = {"auto": None, "yes": True, "no": False}[args.quantize]
    if (Path(args.model) / "adapter_config.json").is_file():
        model, tok = models.load_adapter_model(args.model, quantize=quantize), models.load_tokenizer(models.adapter_base(args.model))
    else:
        model, tok = models.load_model(args.model, quantize=quantize), models.load_tokenizer(args.model)
    model.eval()
    records = data.load_ecqa(args.data)["validation"].select(range(args.questions))
    texts = [prompts.render_prompt(tok, r) for r in records]
    batched(model, tok, texts[:8], 8, 8)  # warm-up
    with torch.inference_mode():
        b_s, b_tok = batched(model, tok, texts, args.max_new_tokens, args.batch_size)
        s_s, s_tok = one_at_a_time(model, tok, texts, args.max_new_tokens)
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    row = dict(model=args.model, questions=args.questions, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
               quantize=args.quantize, batched_s=round(b_s, 2), single_s=round(s_s, 2), batched_tokens=b_tok,
               single_tokens=s_tok, ratio=round(s_s / b_s, 1), card=card)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{dt.date.today().isoformat()}-{card.replace(' ', '-')}-generation.json"
    path.write_text(json.dumps(row, indent=1) + "\n")
    print(f"{'path':14} {'seconds':>8} {'questions/s':>12} {'tokens':>8}")
    print(f"{'one at a time':14} {s_s:8.1f} {args.questions / s_s:12.2f} {s_tok:8d}")
    print(f"{'batched':14} {b_s:8.1f} {args.questions / b_s:12.2f} {b_tok:8d}")
    print(f"ratio {s_s / b_s:.1f}x on {card}; row written to {path}")


if __name__ == "__main__":
    main()

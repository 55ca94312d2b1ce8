"""How much SFT data the quick path needs: SmolLM2-135M trained on N train questions, CoT accuracy on the 500 held-out
train questions (never validation), beside the base model on the same questions (McNemar).

    python scripts/gpu/data_curve.py --sizes 500 1000 2000 4000 --base        # one call
    python scripts/gpu/data_curve.py --sizes all --agreement                  # the next
    python scripts/gpu/data_curve.py --sizes --agreement-from 4000            # engines only, an adapter trained

Every run is the project's own step (`helpers.steps.run_sft`, `run_eval`) at the SFT defaults, forced to fp16 (a
T4's precision) with gradient checkpointing off (SmolLM2 needs no memory saving). ``--agreement`` also evaluates base
and the last SFT adapter on all 1,221 validation questions with both generation engines (`helpers.generation`:
``generate``, the project's engine before continuous batching, and ``continuous``) and reports how often their
answers agree and each engine's accuracy and time. Rows (with wall times, the inputs of docs/speed.md's T4 estimates)
go to ``$OUT/data-curve.json``; a short table is printed last. Needs the bundles of scripts/gpu/bundle.sh (all
three: the embedded model's GGUF comes in two parts) and `. scripts/gpu/setup.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from helpers import evaluation, metrics, models, steps  # noqa: E402
from helpers.settings import EvalSettings, SFTSettings  # noqa: E402

HOLDOUT = 500
OUT = Path(os.environ.get("OUT", "."))


def save(rows: list[dict]) -> None:
    """Rows so far, after every row (a call cut off by its time limit keeps them)."""
    old = json.loads((OUT / "data-curve.json").read_text()) if (OUT / "data-curve.json").is_file() else []
    keep = [r for r in old if r not in rows]
    (OUT / "data-curve.json").write_text(json.dumps(keep + rows, indent=1) + "\n")


def train(size: str, common: dict, work: Path) -> tuple[Path, dict]:
    """SFT on ``size`` questions (``all``: every train question but the held-out ones) under ``work/size``."""
    n = None if size == "all" else int(size)
    s = SFTSettings(**common, root=str(work / size), train_sample_size=n, gradient_checkpointing=False)
    result = steps.run_sft(s)  # an adapter already trained there is kept (its saved summary): the curve resumes
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    steps_done = max((h.get("step", 0) for h in result.log_history), default=0)
    return work / size, {
        "train_questions": size,
        "sft_seconds": round(result.seconds, 1),  # the trainer's own time, model loading left out
        "sft_steps": steps_done,
        "sft_tokens_per_s": round(result.tokens_per_s, 1),
        "first_loss": round(losses[0], 3) if losses else None,
        "final_loss": round(losses[-1], 3) if losses else None,
    }


def holdout_eval(root: Path, variants: tuple[str, ...], common: dict) -> tuple[pd.DataFrame, float]:
    s = EvalSettings(**common, root=str(root), split="holdout", variants=variants, modes=("cot",))
    start = time.perf_counter()
    records = steps.run_eval(s)
    return records, time.perf_counter() - start


def letters(records: pd.DataFrame) -> dict:
    """Share of each predicted letter, and of parse failures ("-")."""
    counts = records["parsed"].fillna("-").value_counts(normalize=True)
    return {k: round(float(v), 3) for k, v in sorted(counts.items())}


def agreement(adapter_root: Path, common: dict) -> list[dict]:
    """Base and the SFT adapter on all validation questions, greedy CoT, with each engine; answers compared."""
    s = EvalSettings(**common, root=str(adapter_root), variants=("base", "sft"), modes=("cot",))
    questions = evaluation.validation_records(s)
    rows = []
    for variant in s.variants:
        if variant == "base":
            model, tok = models.load_model(s.model, precision=s.precision), models.load_tokenizer(s.model)
        else:
            model = models.load_adapter_model(s.variant_dir("sft"), precision=s.precision)
            tok = models.load_tokenizer(s.model)
        by_engine = {}
        for engine in ("generate", "continuous"):
            out = adapter_root / "agreement" / f"{variant}-{engine}.jsonl"
            start = time.perf_counter()
            recs = evaluation.evaluate_cot(model, tok, questions, variant, out, batch_size=32, engine=engine)
            by_engine[engine] = (pd.DataFrame(recs).set_index("id"), time.perf_counter() - start)
        (old, t_old), (new, t_new) = by_engine["generate"], by_engine["continuous"]
        same = (old["parsed"].fillna("-") == new.loc[old.index, "parsed"].fillna("-")).mean()
        same_text = (old["output"] == new.loc[old.index, "output"]).mean()
        acc = {e: float(df["correct"].mean()) for e, (df, _) in by_engine.items()}
        test = metrics.mcnemar_exact(old["correct"].to_numpy(), new.loc[old.index, "correct"].to_numpy())
        rows.append(
            {
                "agreement": variant,
                "questions": len(old),
                "same_answer": round(float(same), 4),
                "same_text": round(float(same_text), 4),
                "acc_generate": round(acc["generate"], 4),
                "acc_continuous": round(acc["continuous"], 4),
                "mcnemar_p": round(float(test["p_value"]), 4),
                "seconds_generate": round(t_old, 1),
                "seconds_continuous": round(t_new, 1),
                "new_tokens_generate": int(old["new_tokens"].sum()),
                "new_tokens_continuous": int(new["new_tokens"].sum()),
                "letters_continuous": letters(new.reset_index()),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        del model
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=["500", "1000", "2000", "4000", "all"])
    parser.add_argument("--base", action="store_true", help="evaluate the base model on the held-out questions too")
    parser.add_argument("--agreement", action="store_true", help="the two engines on validation (last size's SFT)")
    parser.add_argument(
        "--agreement-from", metavar="SIZE", help="--agreement with the SFT already trained on SIZE under --work"
    )
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"], help="fp32: on a CPU")
    parser.add_argument("--data", default=os.environ.get("ECQA_DATA", "../shared/data/ecqa"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/curve"))
    parser.add_argument("--smoke", action="store_true", help="2 SFT steps, 4 questions, 16 new tokens (CPU check)")
    args = parser.parse_args()
    smoke = dict(max_new_tokens=16, sample_size=4) if args.smoke else {}
    OUT.mkdir(parents=True, exist_ok=True)
    common = dict(
        model="smollm2-135m",
        data_source=args.data,
        holdout_size=HOLDOUT,
        precision=args.precision,
        seed=42,
        run_size="full",  # every size here is set by name; the held-out slice and validation are evaluated whole
    )
    rows: list[dict] = []
    if args.base:
        records, seconds = holdout_eval(args.work / "base", ("base",), {**common, **smoke})
        records.to_json(OUT / "holdout-base-cot.jsonl", orient="records", lines=True)
        rows.append({"train_questions": 0, "eval_seconds": round(seconds, 1), **summary(records), "p_vs_base": None})
        save(rows)
    base = (
        pd.read_json(OUT / "holdout-base-cot.jsonl", lines=True)
        if (OUT / "holdout-base-cot.jsonl").is_file()
        else None
    )
    root = None
    for size in args.sizes:
        extra = {"max_steps": 2} if args.smoke else {}
        root, row = train(size, {**common, "report_to": "none", "save_steps": 10**6, **extra}, args.work)
        records, seconds = holdout_eval(root, ("sft",), {**common, **smoke})
        row.update(eval_seconds=round(seconds, 1), **summary(records))
        if base is not None:
            both = pd.concat([base, records.assign(variant="sft")])
            cmp = metrics.paired_comparisons(both, pairs=[("base", "sft")], mode="cot")
            row["p_vs_base"] = round(float(cmp["p_value"].iat[0]), 5) if len(cmp) else None
            row["delta_vs_base"] = round(float(cmp["delta"].iat[0]), 4) if len(cmp) else None
        rows.append(row)
        save(rows)
        print(json.dumps(row), flush=True)
    if args.agreement_from:
        root = args.work / args.agreement_from
        if not models.has_adapter(root / "outputs" / "sft"):
            raise SystemExit(f"no SFT adapter under {root}: run --sizes {args.agreement_from} first")
    if (args.agreement or args.agreement_from) and root is not None:
        rows += agreement(root, {**common, **smoke})
        save(rows)
    print(f"\n{'questions':>9} {'acc':>6} {'parse fail':>10} {'p vs base':>9} {'SFT s':>6} {'eval s':>6}")
    for r in rows:
        if "accuracy" in r:
            p = r.get("p_vs_base")
            print(
                f"{r['train_questions']!s:>9} {r['accuracy']:6.3f} {r['parse_fail_rate']:10.3f} "
                f"{'-' if p is None else format(p, '.4f'):>9} {r.get('sft_seconds', 0):6.0f} {r['eval_seconds']:6.0f}"
            )
        else:
            print(
                f"engines on {r['agreement']}: same answer {r['same_answer']:.3f}, acc {r['acc_generate']:.3f} vs "
                f"{r['acc_continuous']:.3f} (p {r['mcnemar_p']}), "
                f"{r['seconds_generate']} s vs {r['seconds_continuous']} s"
            )


def summary(records: pd.DataFrame) -> dict:
    """Accuracy (with its 95% Wilson lower bound), parse failures, mean new tokens and letter shares of one variant's
    CoT records. An SFT that beats the base only by parsing (the base often writes no answer line) while it answers
    one letter is not a result: the quick size also needs accuracy above chance and no letter collapse."""
    low, _ = metrics.wilson_interval(int(records["correct"].sum()), len(records))
    shares = records["parsed"].dropna().value_counts(normalize=True)
    return {
        "n": len(records),
        "accuracy": round(float(records["correct"].mean()), 4),
        "accuracy_low95": round(low, 4),  # above 0.2 (chance at 5 choices): more than guessing
        "top_letter_share": round(float(shares.max()), 3) if len(shares) else None,  # of parsed answers
        "parse_fail_rate": round(float(records["parsed"].isna().mean()), 4),
        "mean_new_tokens": round(float(records["new_tokens"].mean()), 1),
        "letters": letters(records),
    }


if __name__ == "__main__":
    main()

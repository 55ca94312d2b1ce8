"""Evaluate model variants (base, sft, dpo, ...) on CommonsenseQA validation in the modes of `helpers.eval_modes`.

* ``cot``: the chat prompt of `helpers.prompts`, greedy generation, `helpers.answers.extract_answer`; a record
  without a letter says why (``failure``: out_of_tokens / dangling_anchor / no_anchor, `metrics.classify_failure`).
* ``cot@k``: k chains of thought sampled at ``temperature``, majority vote of their letters (`metrics.majority_vote`:
  a tie goes to the tied letter sampled first); ``detail`` keeps every sample's letter and failure.
* ``cloze``, ``letter``, ``letter-cyclic``: log-likelihood scoring as lm-evaluation-harness does it
  (`helpers.scoring`); nothing is generated, ``detail`` keeps the per-choice scores. ``cloze``'s headline is the
  length-normalised pick (``acc_norm``, log-prob / characters): summed log-probs favour short answer texts, and it
  is the formulation of the published SmolLM2 figure (33.9 for the 135M base on CommonsenseQA, lighteval); the
  summed pick (``acc``) is reported beside it.

Every finished batch is appended to ``eval_dir/{variant}-{mode}.jsonl`` (`helpers.records`), so a rerun after a
disconnect skips what is done. The file's provenance (model, adapter hash, dtype, quantization, the mode's
settings) is kept beside it; records made otherwise are moved aside to ``.stale`` and redone.
"""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from helpers import distributed, provenance
from helpers.answers import extract_answer
from helpers.data import load_ecqa
from helpers.eval_modes import MODES
from helpers.generation import Generation, generate_all, is_4bit
from helpers.metrics import classify_failure, majority_vote, paired_comparisons, summarize
from helpers.prompts import render_prompt
from helpers.records import (  # noqa: F401  (re-exported: the records' API)
    RECORD_FIELDS,
    Batches,
    append_records,
    merge_rank_files,
    rank_file,
    read_records,
    run_resumable,
    shard,
)
from helpers.scoring import (  # noqa: F401  (letter_prompt, cloze_context: the texts 05_eval shows)
    argmax_letter,
    cloze_context,
    cloze_scores,
    letter_prompt,
    letter_scores,
    rotations,
    unrotate,
)
from helpers.settings import EvalSettings

PRODUCED_BY = {"sft": "notebooks/03_sft (SFTSettings)", "dpo": "notebooks/04_dpo (DPOSettings.variant)"}
SAMPLE_SEPARATOR = "\n\n----- next sample -----\n\n"  # between cot@k's samples in a record's output


# ---------------------------------------------------------------- generated answers
def _cot_result(gen: Generation, max_new_tokens: int) -> dict[str, Any]:
    parsed = extract_answer(gen.text)
    return {
        "output": gen.text,
        "parsed": parsed,
        "new_tokens": gen.new_tokens,
        "failure": classify_failure(gen.text, parsed, gen.new_tokens, max_new_tokens),
        "detail": None,
    }


def vote(samples: Sequence[Generation], max_new_tokens: int) -> dict[str, Any]:
    """cot@k's result from k samples: the majority letter; with none, the most frequent failure among the samples."""
    each = [_cot_result(g, max_new_tokens) for g in samples]
    letters, failures = [r["parsed"] for r in each], [r["failure"] for r in each]
    parsed = majority_vote(letters)
    return {
        "output": SAMPLE_SEPARATOR.join(g.text for g in samples),
        "parsed": parsed,
        "new_tokens": round(sum(g.new_tokens for g in samples) / len(samples)),
        "failure": None if parsed else Counter(failures).most_common(1)[0][0],
        "detail": {"votes": letters, "failures": failures, "new_tokens": [g.new_tokens for g in samples]},
    }


def evaluate_cot(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    variant: str,
    out_path: str | Path,
    batch_size: int = 32,
    max_new_tokens: int = 192,
    engine: str = "auto",
) -> list[dict]:
    """Greedy explanation + ``Answer: X`` per question, parsed by `extract_answer`; resumable.

    ``engine``: `helpers.generation.pick_engine` (continuous batching on a GPU).
    """
    prompts = [render_prompt(tokenizer, q) for q in questions]

    def run(todo: list[int]) -> Batches:
        for idx, gens in generate_all(
            model,
            tokenizer,
            [prompts[i] for i in todo],
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            engine=engine,
        ):
            yield [todo[j] for j in idx], [_cot_result(g[0], max_new_tokens) for g in gens]

    return run_resumable(questions, prompts, variant, "cot", out_path, run)


def evaluate_cot_at_k(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    variant: str,
    out_path: str | Path,
    batch_size: int = 32,
    max_new_tokens: int = 192,
    k: int = 8,
    temperature: float = 0.7,
    seed: int = 42,
    engine: str = "auto",
) -> list[dict]:
    """Self-consistency: ``k`` samples per question, majority vote; resumable.

    Sampling is seeded once per call, so a resumed run samples its remaining questions differently. On CPU
    (`helpers.generation`'s ``generate`` engine) ``batch_size // k`` questions decode together.
    """
    prompts = [render_prompt(tokenizer, q) for q in questions]

    def run(todo: list[int]) -> Batches:
        for idx, gens in generate_all(
            model,
            tokenizer,
            [prompts[i] for i in todo],
            batch_size=max(1, batch_size // k),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            num_return_sequences=k,
            seed=seed,
            engine=engine,
        ):
            yield [todo[j] for j in idx], [vote(samples, max_new_tokens) for samples in gens]

    return run_resumable(questions, prompts, variant, "cot@k", out_path, run)


# ---------------------------------------------------------------- scored answers (nothing generated)
def _scored(detail: dict[str, list[float]], headline: str) -> dict[str, Any]:
    letter = argmax_letter(detail[headline])
    return {"output": letter, "parsed": letter, "new_tokens": 0, "failure": None, "detail": detail}


def _evaluate_scored(
    questions: Sequence[Mapping[str, Any]],
    prompts: list[str],
    variant: str,
    mode: str,
    out_path: str | Path,
    batch_size: int,
    score: Any,
) -> list[dict]:
    """Run ``score(questions) -> [detail]`` over batches of ``batch_size`` questions; the headline metric picks."""
    headline = MODES[mode].metrics[0]

    def run(todo: list[int]) -> Batches:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            yield chunk, [_scored(d, headline) for d in score([questions[i] for i in chunk])]

    return run_resumable(questions, prompts, variant, mode, out_path, run)


def evaluate_cloze(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    variant: str,
    out_path: str | Path,
    batch_size: int = 32,
) -> list[dict]:
    """Each choice's text as a continuation of ``Question: ...\\nAnswer:``; picked by log-prob per character."""

    def score(batch: list) -> list:
        return cloze_scores(model, tokenizer, batch, batch_size=5 * batch_size)

    return _evaluate_scored(
        questions, [cloze_context(q) for q in questions], variant, "cloze", out_path, batch_size, score
    )


def evaluate_letter(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    variant: str,
    out_path: str | Path,
    batch_size: int = 32,
) -> list[dict]:
    """The likeliest of " A" ... " E" after the lettered choices (lm-eval ``commonsense_qa``, ``acc``); resumable."""

    def score(batch: list) -> list:
        return [{"acc": s} for s in letter_scores(model, tokenizer, [letter_prompt(q) for q in batch], batch_size)]

    return _evaluate_scored(
        questions, [letter_prompt(q) for q in questions], variant, "letter", out_path, batch_size, score
    )


def evaluate_letter_cyclic(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    variant: str,
    out_path: str | Path,
    batch_size: int = 32,
) -> list[dict]:
    """Letter mode with each choice's score averaged over the 5 cyclic rotations of the choices; resumable.

    A prior for a position (e.g. " A") then adds the same to every choice and cannot pick the answer.
    """

    def score(batch: list) -> list:
        contexts = [letter_prompt(q, rot) for q in batch for rot in rotations(q["choices"])]
        flat = letter_scores(model, tokenizer, contexts, batch_size=5 * batch_size)
        n = len(rotations(batch[0]["choices"])) if batch else 0
        return [{"acc": unrotate(flat[i : i + n])} for i in range(0, len(flat), n)]

    return _evaluate_scored(
        questions, [letter_prompt(q) for q in questions], variant, "letter-cyclic", out_path, batch_size, score
    )


# ---------------------------------------------------------------- every variant in every mode
def validation_records(settings: EvalSettings, data: Any = None) -> list[dict]:
    """The questions to evaluate (``settings.split``): the first ``sample_size`` after a seeded shuffle, or all."""
    if data is None:
        data = load_ecqa(settings.data_source, seed=settings.seed, holdout_size=settings.holdout_size)
    if settings.split not in data:
        raise ValueError(
            f"the data has no {settings.split!r} split: load it with holdout_size={settings.holdout_size}"
        )
    val = data[settings.split]
    if settings.sample_size is not None:
        val = val.shuffle(seed=settings.seed).select(range(min(settings.sample_size, val.num_rows)))
    return list(val)


def records_path(settings: EvalSettings, variant: str, mode: str) -> Path:
    """Where a variant's records in one mode are kept (``{variant}-{mode}.jsonl``, split-suffixed off validation)."""
    suffix = "" if settings.split == "validation" else f"-{settings.split}"
    return settings.eval_dir / f"{variant}-{mode}{suffix}.jsonl"


def _load_variant(settings: EvalSettings, variant: str) -> tuple[Any, Any, Path | None] | None:
    """(model, tokenizer, adapter folder) of a variant, or None (with a note) when its adapter is not trained yet."""
    from helpers.models import (
        adapter_base,
        has_adapter,
        inference_4bit,
        load_adapter_model,
        load_model,
        load_tokenizer,
    )

    if variant == "base":
        quantize = inference_4bit(settings.model, settings.quantize, settings.precision)
        model = load_model(settings.model, precision=settings.precision, quantize=quantize)
        return model, load_tokenizer(settings.model), None
    folder = settings.variant_dir(variant)
    if not has_adapter(folder):
        producer = PRODUCED_BY.get(variant) or PRODUCED_BY["dpo" if variant.startswith("dpo") else "sft"]
        print(f"skipping variant {variant!r}: no adapter in {folder} (train it with {producer}, same root)")
        return None
    model = load_adapter_model(folder, precision=settings.precision, quantize=settings.quantize)
    return model, load_tokenizer(adapter_base(folder)), folder


def records_provenance(
    settings: EvalSettings, variant: str, mode: str, model: Any, adapter: Path | None
) -> dict[str, Any]:
    """What a records file depends on: model, variant, adapter weights, dtype, quantization, the mode's settings.

    The question selection is not part of it: records are per question, so another sample reuses the ones it shares.
    """
    try:
        adapter_id = provenance.adapter_hash(adapter) if adapter is not None else None
    except OSError:  # no safetensors weights (an old .bin adapter): its folder's name is all we can record
        adapter_id = str(adapter)
    params = {p: getattr(settings, p) for p in MODES[mode].params if p != "batch_size"}  # batching changes nothing
    return {
        "model": settings.model,
        "variant": variant,
        "adapter": adapter_id,
        "mode": mode,
        "dtype": str(getattr(model, "dtype", "")),
        "quantized": is_4bit(model),
        **params,
    }


def prepare_records_file(out_path: Path, expected: Mapping[str, Any]) -> None:
    """Resume ``out_path`` if it was made as ``expected``, else move it (and its rank files) aside; rank 0 only."""
    if distributed.is_main() and not provenance.resume_or_restart(out_path, expected):
        for part in out_path.parent.glob(f"{out_path.stem}.rank*{out_path.suffix}"):
            part.replace(part.with_name(part.name + ".stale"))
    distributed.barrier()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate_variants(settings: EvalSettings, data: Any = None) -> pd.DataFrame:
    """Every variant of ``settings.variants`` in every mode of ``settings.modes``; all records as one DataFrame.

    Each mode runs its registry entry's runner (`helpers.eval_modes.EvalMode.runner`) with the settings it names.
    """
    questions = validation_records(settings, data)
    rows: list[dict] = []
    for variant in settings.variants:
        loaded = _load_variant(settings, variant)
        if loaded is None:
            continue
        model, tokenizer, adapter = loaded
        for name in settings.modes:
            mode, out = MODES[name], records_path(settings, variant, name)
            prepare_records_file(out, records_provenance(settings, variant, name, model, adapter))
            runner = getattr(sys.modules[__name__], mode.runner)
            rows += runner(model, tokenizer, questions, variant, out, **{p: getattr(settings, p) for p in mode.params})
        del loaded, model, tokenizer  # drop every reference before collecting
        free_memory()
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


def results_table(records_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy per variant, mode and metric with Wilson CIs and letter shares, paired McNemar comparisons)."""
    return summarize(records_df), paired_comparisons(records_df)


def save_results(records_df: pd.DataFrame, eval_dir: str | Path) -> list[Path]:
    """Write ``results.csv``, ``results.json`` (summary + comparisons) and ``comparisons.csv``."""
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    summary, comparisons = results_table(records_df)
    paths = [eval_dir / "results.csv", eval_dir / "results.json", eval_dir / "comparisons.csv"]
    summary.to_csv(paths[0], index=False)
    as_json = {
        name: json.loads(df.to_json(orient="records"))
        for name, df in (("summary", summary), ("comparisons", comparisons))
    }
    paths[1].write_text(json.dumps(as_json, indent=2) + "\n")
    comparisons.to_csv(paths[2], index=False)
    return paths

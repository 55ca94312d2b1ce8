"""The pipeline's steps, from a settings object to saved artifacts: what the notebooks and the command line run.

A *step* is a stage of the pipeline (sft, pairs, dpo, eval); a model *variant* is what a step produces or
evaluates ("base", "sft", "dpo", "dpo-offline", ...). Each step reads its inputs from the artifacts root and
writes there, so any step can start from the previous step's saved artifacts. The notebooks call these same
functions (handing in the model and tokenizer they already loaded); the command line (`helpers.cli`) too:

    python -m helpers sft settings/sft.json --learning_rate 1e-4

Before a model is loaded, `prepare` checks the inputs a step needs (data folder, model folder, SFT adapter,
pairs file) and that nothing would train or tune on the SFT run's held-out questions; a problem ends the
command with one line naming the fix (exit status 2), and nothing under the root is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from helpers import data as data_mod
from helpers import distributed, models, provenance, training
from helpers.settings import DPOSettings, EvalSettings, PairSettings, Settings, SFTSettings

HOLDOUT_FILE = "holdout_ids.json"  # in an adapter folder: the train questions its SFT run held out


def load_data(s: Settings) -> DatasetDict:
    """The leak-free data the settings ask for (held-out slice and train sample applied)."""
    return data_mod.load_ecqa(
        s.data_source, train_sample_size=s.train_sample_size, seed=s.seed, holdout_size=s.holdout_size
    )


# ---------------------------------------------------------------- held-out questions stay held out
def holdout_ids(adapter_dir: str | Path) -> set[str]:
    """The train questions that the SFT run behind an adapter held out (empty when it held none out)."""
    path = Path(adapter_dir) / HOLDOUT_FILE
    return set(json.loads(path.read_text())) if path.is_file() else set()


def refuse_holdout(ids: Any, adapter_dir: str | Path, what: str) -> None:
    """Refuse to train or tune on questions that the SFT run behind ``adapter_dir`` held out."""
    overlap = sorted({str(i) for i in ids} & holdout_ids(adapter_dir))
    if overlap:
        raise ValueError(
            f"{what} would use {len(overlap)} questions (e.g. {overlap[0]}) that the SFT run in "
            f"{adapter_dir} held out for tuning: use that run's seed and holdout_size "
            f"(see {Path(adapter_dir) / 'settings.json'})"
        )


def refuse_other_answer_format(answer_format: str, adapter_dir: str | Path, what: str) -> None:
    """Pairs must end their answers the way the SFT run behind ``adapter_dir`` was taught to."""
    saved = Path(adapter_dir) / "settings.json"
    taught = json.loads(saved.read_text()).get("answer_format", "letter") if saved.is_file() else answer_format
    if taught != answer_format:
        raise ValueError(
            f"{what} uses answer_format {answer_format!r} but the SFT run in {adapter_dir} was trained "
            f"with {taught!r}: set answer_format={taught!r}"
        )


def check_pair_data(s: PairSettings, data: DatasetDict) -> None:
    """Pairs never sample the SFT run's held-out questions, and end their answers the way it was taught to."""
    if s.strategy == "on_policy":
        refuse_holdout(data["train"]["id"], s.sft_dir, "sampling on-policy pairs")
    if models.has_adapter(s.sft_dir):
        refuse_other_answer_format(s.answer_format, s.sft_dir, "these pairs")


def _write_holdout(s: SFTSettings, data: DatasetDict) -> None:
    held = sorted(data["holdout"]["id"]) if "holdout" in data else []
    s.output_dir.mkdir(parents=True, exist_ok=True)
    (s.output_dir / HOLDOUT_FILE).write_text(json.dumps(held) + "\n")


# ---------------------------------------------------------------- the steps
def run_sft(
    s: SFTSettings, data: DatasetDict | None = None, model: Any = None, tokenizer: Any = None
) -> training.TrainResult:
    """Train (or resume) the SFT adapter into ``root/outputs/sft``."""
    data = data or load_data(s)
    if distributed.is_main():
        _write_holdout(s, data)
    inputs = {"train_ids": provenance.ids_hash(data["train"]["id"])}
    return training.train_sft(s, data["train"], model=model, tokenizer=tokenizer, inputs=inputs)


def run_pairs(
    s: PairSettings, data: DatasetDict | None = None, model: Any = None, tokenizer: Any = None
) -> tuple[list[dict], Any]:
    """Build preference pairs into ``root/data/dpo_pairs.jsonl`` (on-policy: sampled from the SFT adapter)."""
    from helpers import pairs

    data = data or load_data(s)
    check_pair_data(s, data)
    on_policy = s.strategy == "on_policy"
    tokenizer = tokenizer or models.load_tokenizer(models.adapter_base(s.sft_dir) if on_policy else s.model)
    if on_policy and model is None:
        model = models.load_adapter_model(s.sft_dir, precision=s.precision, quantize=s.quantize)
    built, report = pairs.build_pairs(s, tokenizer, data["train"], model=model)
    pairs.write_pairs(built, s.pairs, report)
    made_by = {
        "strategy": s.strategy,
        "model": s.model,
        "max_length": s.max_length,
        "seed": s.seed,
        "answer_format": s.answer_format,
        "holdout_size": s.holdout_size,
        "train_sample_size": s.train_sample_size,
        "pairs_per_question": s.pairs_per_question,
        "rejected_first": s.rejected_first,
        "weight_unsure": s.weight_unsure,
        "when_all_agree": s.when_all_agree,
        "train_ids": provenance.ids_hash(data["train"]["id"]),
    }
    if on_policy:
        made_by["samples"] = provenance.read(pairs.samples_path(s))
    provenance.write(s.pairs, made_by)
    print(report)
    return built, report


def pairs_to_build(s: PairSettings) -> PairSettings:
    """The pair settings 02_pairs runs: on-policy pairs sample the SFT adapter, so before 03_sft has made one the
    pairs are offline, and this says why (the command line refuses instead: ``prepare``)."""
    if s.strategy == "on_policy" and not models.has_adapter(s.sft_dir):
        print(
            f"no SFT adapter in {s.sft_dir} yet: on-policy pairs are samples of the SFT model (notebook 03_sft), "
            "so these pairs are offline. Run this notebook again after 03_sft for on-policy pairs."
        )
        return s.replace(strategy="offline")
    return s


def pairs_for_dpo(s: DPOSettings) -> Dataset:
    """The pairs DPO trains on: checked against the SFT adapter they will train, sampled by ``train_sample_size``."""
    from helpers import pairs

    pair_ds = pairs.read_pairs(s.pairs)
    made_by = provenance.read(s.pairs)
    if made_by is None:
        raise ValueError(
            f"{s.pairs} records nothing about what made it (an older version wrote it): rebuild it "
            "with notebooks/02_pairs (python -m helpers pairs ...)"
        )
    sampled_from = (made_by.get("samples") or {}).get("sft_adapter")
    if made_by.get("strategy") == "on_policy" and sampled_from != provenance.adapter_hash(s.sft_dir):
        raise ValueError(
            f"the on-policy pairs in {s.pairs} were sampled from another SFT adapter than the one in "
            f"{s.sft_dir} (retrained since?): rebuild them with notebooks/02_pairs"
        )
    refuse_holdout(pair_ds["id"], s.sft_dir, f"DPO on {s.pairs}")
    refuse_other_answer_format(made_by.get("answer_format", "letter"), s.sft_dir, f"the pairs in {s.pairs}")
    train_ids = set(split_pairs(s, pair_ds)[0])
    pair_ds = pair_ds.filter(lambda row: str(row["id"]) in train_ids)
    if s.train_sample_size and s.train_sample_size < pair_ds.num_rows:  # a seeded subset of the pairs
        pair_ds = pair_ds.shuffle(seed=s.seed).select(range(s.train_sample_size))
    return pair_ds


def split_pairs(s: DPOSettings, pair_ds: Any) -> tuple[list[str], list[str]]:
    """(question ids DPO trains on, ids held out for preference accuracy): ``eval_fraction`` of the questions,
    seeded, whole questions (`helpers.preference.held_out_split`)."""
    from helpers.preference import held_out_split

    questions = [{"id": i} for i in sorted({str(i) for i in pair_ds["id"]})]
    train, held = held_out_split(questions, int(len(questions) * s.eval_fraction), seed=s.seed)
    return [r["id"] for r in train], [r["id"] for r in held]


def compare_with_sft(s: DPOSettings, data: DatasetDict | None = None, max_new_tokens: int = 192) -> tuple[Any, dict]:
    """After DPO: the SFT and the DPO model each answer ``compare_questions`` validation questions (greedy CoT,
    records under ``<output_dir>/compare``, resumable) and score the held-out pairs (`helpers.preference`).

    Returns (the records as a DataFrame, the held-out preference report; empty without held-out pairs).
    """
    import pandas as pd

    from helpers import evaluation, preference

    ev = EvalSettings(
        model=s.model,
        data_source=s.data_source,
        root=s.root,
        holdout_size=s.holdout_size,
        seed=s.seed,
        run_size="full",
        sample_size=s.compare_questions,
    )
    questions = evaluation.validation_records(ev, data or load_data(s))
    held = held_out_pairs(s) if s.eval_fraction else []
    rows: list[dict] = []
    scores = {}
    evaluation.free_memory()  # continuous batching sizes its cache from the memory free when it starts
    for name, folder in (("sft", s.sft_dir), (s.variant, s.output_dir)):
        model = models.load_adapter_model(folder, precision=s.precision, quantize=s.quantize)
        tok = models.load_tokenizer(models.adapter_base(folder))
        path = s.output_dir / "compare" / f"{name}-cot.jsonl"
        expected = {"adapter": provenance.adapter_hash(folder), "max_new_tokens": max_new_tokens}
        evaluation.prepare_records_file(path, {**expected, "dtype": str(model.dtype)})
        rows += evaluation.evaluate_cot(model, tok, questions, name, path, max_new_tokens=max_new_tokens)
        if held:
            scores[name] = preference.pair_log_probs(model, tok, held)
        del model
        evaluation.free_memory()
    report = preference.preference_report(scores["sft"], scores[s.variant]) if held else {}
    (s.output_dir / "compare" / "preference.json").write_text(json.dumps(report, indent=1) + "\n")
    return pd.DataFrame(rows), report


def held_out_pairs(s: DPOSettings) -> list[dict]:
    """The pairs of the questions `split_pairs` kept out of DPO's training."""
    from helpers import pairs

    pair_ds = pairs.read_pairs(s.pairs)
    held = set(split_pairs(s, pair_ds)[1])
    return [row for row in pair_ds if str(row["id"]) in held]


def run_dpo(
    s: DPOSettings, pair_ds: Dataset | None = None, model: Any = None, tokenizer: Any = None
) -> training.TrainResult:
    """DPO from the SFT adapter on the saved pairs into ``root/outputs/<variant>``."""
    pair_ds = pair_ds if pair_ds is not None else pairs_for_dpo(s)
    inputs = {
        "sft_adapter": provenance.adapter_hash(s.sft_dir),
        "pairs": provenance.file_hash(s.pairs),
        "pair_ids": provenance.ids_hash(pair_ds["id"]),
    }
    result = training.train_dpo(s, pair_ds, model=model, tokenizer=tokenizer, inputs=inputs)
    if distributed.is_main():  # the held-out questions travel with the adapter
        (s.output_dir / HOLDOUT_FILE).write_text(json.dumps(sorted(holdout_ids(s.sft_dir))) + "\n")
    return result


def check_eval_split(s: EvalSettings, data: DatasetDict) -> None:
    """Evaluating on the held-out slice: each trained variant must have held out exactly those questions."""
    if s.split != "holdout":
        return
    asked = set(data["holdout"]["id"])
    for variant in s.variants:
        folder = s.variant_dir(variant)
        if variant != "base" and models.has_adapter(folder) and not asked <= holdout_ids(folder):
            raise ValueError(
                f"variant {variant!r} did not hold out these {len(asked)} questions (its SFT run used "
                "another seed or holdout_size), so it may have trained on them: evaluate with that "
                f"run's seed and holdout_size (see {folder / 'settings.json'})"
            )


def open_published(s: EvalSettings) -> Any:
    """The records in ``results_from`` (``*.jsonl`` or ``*.jsonl.gz``); their tables go to ``root/eval-published``."""
    from helpers import evaluation, metrics

    paths = metrics.records_files(s.results_from)
    if not paths:
        raise FileNotFoundError(
            f"no *.jsonl or *.jsonl.gz records in {s.results_from}: set results_from to a folder of records, "
            "or empty it to evaluate"
        )
    records = metrics.load_records(paths)
    if distributed.is_main():
        evaluation.save_results(records, s.eval_dir)
    print("opened", [p.name for p in paths])
    return records


def run_eval(s: EvalSettings, data: DatasetDict | None = None) -> Any:
    """Evaluate every available variant in every mode; save records, table and chart under ``root/eval``.
    With ``results_from`` set, open those records instead (nothing is evaluated)."""
    from helpers import evaluation

    if s.results_from:
        return open_published(s)
    check_variants(s)
    data = data or load_data(s)
    check_eval_split(s, data)
    records = evaluation.evaluate_variants(s, data=data)  # sharded over the processes when there are several
    if distributed.is_main():  # the table once, from the merged records
        evaluation.save_results(records, s.eval_dir)
    return records


# ---------------------------------------------------------------- input checks (before any model loads)
WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "*.gguf")


def check_model(name: str) -> None:
    """A local model folder must exist and hold weights; presets and Hub ids are checked when they load."""
    folder = Path(models.resolve(name)[0])  # a missing folder or one without config.json is refused here
    if folder.is_dir() and not any(any(folder.glob(pattern)) for pattern in WEIGHTS):
        raise FileNotFoundError(
            f"model folder {folder} has a config.json but no weights (model.safetensors or "
            "pytorch_model.bin): copy the weights into it, or set model to a complete folder, "
            "a Hub id or a preset"
        )


def check_sft_adapter(s: DPOSettings | PairSettings) -> None:
    """The SFT adapter that DPO and on-policy pairs start from: present, and trained on ``s.model``."""
    models.require_adapter(
        s.sft_dir,
        "run notebooks/03_sft (python -m helpers sft) with the same root first, or set sft_adapter to its folder",
    )
    models.sft_adapter_base(s.sft_dir, s.model, type(s).__name__)


def check_variants(s: EvalSettings) -> None:
    """At least one variant to evaluate: "base", or one whose adapter is under ``root/outputs``."""
    if all(v != "base" and not models.has_adapter(s.variant_dir(v)) for v in s.variants):
        raise FileNotFoundError(
            f"none of the variants {list(s.variants)} has an adapter under "
            f"{s.root_dir / 'outputs'}: train them first with the same root (notebooks/03_sft "
            "for 'sft', 04_dpo for 'dpo'), or add 'base' to variants"
        )


def prepare(step: str, s: Any) -> dict[str, Any]:
    """Check a step's inputs and load the cheap ones (data, pairs): the keyword arguments of its run.

    Raises FileNotFoundError / ValueError naming the fix (the notebook to run first, the setting to change).
    """
    check_model(s.model)
    if step == "pairs" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "pairs are built by one process (each would sample all questions into the same file): "
            "run python -m helpers pairs without accelerate launch / torchrun"
        )
    if step == "dpo":
        check_sft_adapter(s)
        return {"pair_ds": pairs_for_dpo(s)}
    if step == "pairs" and s.strategy == "on_policy":
        check_sft_adapter(s)
    if step == "eval" and s.results_from:
        return {}
    if step == "eval":
        check_variants(s)
    data = load_data(s)
    if step == "pairs":  # the run checks again (cheap); here a failure is one line before any model loads
        check_pair_data(s, data)
    if step == "eval":
        check_eval_split(s, data)
    return {"data": data}


STEPS: dict[str, Callable[..., Any]] = {"sft": run_sft, "pairs": run_pairs, "dpo": run_dpo, "eval": run_eval}

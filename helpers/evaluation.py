"""Evaluate base / SFT / DPO on CommonsenseQA validation: chain-of-thought and letter log-likelihood.

* ``cot``: the chat prompt of `helpers.prompts`, greedy generation, `helpers.answers.extract_answer`.
* ``letter``: lm-evaluation-harness's ``commonsense_qa`` task: plain text ending in ``Answer:``, the
  choice whose continuation (" A" ... " E") has the highest log-likelihood wins; nothing is generated.

Every finished batch is appended to ``eval_dir/{stage}-{mode}.jsonl`` (one record per question:
`RECORD_FIELDS`), so a rerun after a disconnect skips what is done and loses at most one batch.

Run as several processes (``accelerate launch --num_processes N -m helpers.evaluate S.json``), each
process evaluates every N-th question into its own ``{stage}-{mode}.rank{r}.jsonl`` (resumable the
same way); rank 0 then merges them into ``{stage}-{mode}.jsonl`` and deletes them, so the folder
ends as a single-process run leaves it. A rank file found later (a run killed before the merge) is
merged by the next run, whatever its number of processes.
"""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd
import torch

from helpers import distributed
from helpers.answers import LETTERS, extract_answer
from helpers.data import load_ecqa
from helpers.generation import generate_all
from helpers.jsonl import append_jsonl as append_records  # the one JSONL writer
from helpers.jsonl import write_jsonl_atomic
from helpers.metrics import paired_comparisons, summarize
from helpers.prompts import render_prompt
from helpers.settings import EvalSettings

RECORD_FIELDS = ("id", "model", "mode", "prompt", "output", "parsed", "gold", "correct", "new_tokens")
PRODUCED_BY = {"sft": "notebooks/03_sft (SFTSettings)", "dpo": "notebooks/04_dpo (DPOSettings.stage)"}
# (batch indices into the pending prompts, [(output, parsed, new_tokens)] per index)
Batches = Iterator[tuple[list[int], list[tuple[str, str | None, int]]]]


# ---------------------------------------------------------------- the one JSONL reader / writer
def read_records(path: str | Path, repair: bool = True) -> list[dict]:
    """Records of a JSONL file; a partial last line (a killed write) is ignored, and cut from the file
    when ``repair`` (so appends stay valid; off where other processes may read the file too)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # drop the unfinished line
        keep = data.rfind(b"\n") + 1
        if repair:
            with open(path, "r+b") as f:
                f.truncate(keep)
        data = data[:keep]
    rows = []
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno} is not valid JSON ({e}); delete the file to redo this evaluation") from e
    return rows


def shard(records: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Every ``world``-th record starting at ``rank`` (one share of a multi-process evaluation)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
    return list(records[rank::world])


def rank_file(out_path: str | Path, rank: int) -> Path:
    """Where process ``rank`` of a multi-process evaluation appends its share: ``{stage}-{mode}.rank{r}.jsonl``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.rank{rank}{out_path.suffix}")


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=total == 0)


def _done_records(paths: Sequence[Path], prompt_of: Mapping[str, str], stage: str, mode: str,
                  repair: Sequence[bool]) -> dict[str, dict]:
    """id -> the first record in ``paths`` of each question in ``prompt_of``; a record of another run raises."""
    done: dict[str, dict] = {}
    for path, fix in zip(paths, repair):
        for row in read_records(path, repair=fix):
            rid = str(row.get("id"))
            if rid not in prompt_of or rid in done:
                continue
            if (row.get("model"), row.get("mode"), row.get("prompt")) != (stage, mode, prompt_of[rid]):
                raise ValueError(
                    f"{path} holds a record for {rid} from another run (model/mode/prompt differ, e.g. another "
                    "base model or prompt format): delete the file or choose another root to re-evaluate"
                )
            done[rid] = row
    return done


def _evaluate(records: Sequence[Mapping[str, Any]], prompts: list[str], stage: str, mode: str,
              out_path: str | Path, run: Callable[[list[str]], Batches]) -> list[dict]:
    """Resume from ``out_path``, run the pending prompts batch by batch, append each batch; all records in input order.

    Under several processes each one does its `shard` into its `rank_file`, and rank 0 merges the shares into
    ``out_path`` (`merge_rank_files`); every process returns all records.
    """
    ids = [str(r["id"]) for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("records contain duplicate ids: evaluate each question once")
    prompt_of = dict(zip(ids, prompts))
    rank, world = distributed.rank_world()
    if world == 1:
        done = _done_records([Path(out_path)], prompt_of, stage, mode, repair=[True])
        mine, write_to, where = range(len(ids)), Path(out_path), f"in {out_path}"
    else:  # records merged earlier count as done; only this process appends to (and repairs) its own file
        mine, write_to = shard(range(len(ids)), rank, world), rank_file(out_path, rank)
        done = _done_records([Path(out_path), write_to], {ids[i]: prompts[i] for i in mine}, stage, mode,
                             repair=[False, True])
        where = f"done by rank {rank} of {world}"
    todo = [i for i in mine if ids[i] not in done]
    if done:
        print(f"{stage}/{mode}: {len(done)} of {len(mine)} questions already {where}, {len(todo)} to go")
    with _progress(len(todo), f"{stage}/{mode}" + (f" rank {rank}" if world > 1 else "")) as bar:
        for idx, outs in run([prompts[i] for i in todo]):
            batch = []
            for j, (output, parsed, new_tokens) in zip(idx, outs):
                rec = records[todo[j]]
                gold = rec["answer"]
                batch.append({"id": ids[todo[j]], "model": stage, "mode": mode, "prompt": prompts[todo[j]],
                              "output": output, "parsed": parsed, "gold": gold,
                              "correct": parsed == gold, "new_tokens": int(new_tokens)})
            append_records(write_to, batch)
            done.update((r["id"], r) for r in batch)
            bar.update(len(batch))
    if world == 1:
        return [done[rid] for rid in ids]
    distributed.barrier()  # every share is on disk
    if rank == 0:
        merge_rank_files(out_path, prompt_of, stage, mode)
    distributed.barrier()  # the merged file is complete
    merged = _done_records([Path(out_path)], prompt_of, stage, mode, repair=[False])
    return [merged[rid] for rid in ids]


def merge_rank_files(out_path: str | Path, prompt_of: Mapping[str, str], stage: str, mode: str) -> list[dict]:
    """Join the rank files of ``out_path`` into it and delete them: one record per question, the records it
    already held first, then the new ones in question order (the order of ``prompt_of``); written atomically."""
    out_path = Path(out_path)
    name = re.compile(re.escape(out_path.stem) + r"\.rank\d+" + re.escape(out_path.suffix))
    parts = sorted(p for p in out_path.parent.glob(f"*{out_path.suffix}") if name.fullmatch(p.name))
    rows, seen = [], set()
    for row in read_records(out_path):
        if str(row.get("id")) not in seen:
            seen.add(str(row.get("id")))
            rows.append(row)
    new = _done_records(parts, prompt_of, stage, mode, repair=[True] * len(parts))
    rows += [new[rid] for rid in prompt_of if rid in new and rid not in seen]
    missing = [rid for rid in prompt_of if rid not in seen and rid not in new]
    if missing:
        raise RuntimeError(f"{stage}/{mode}: {len(missing)} questions (e.g. {missing[0]}) are in no rank file of "
                           f"{out_path}: a process did not finish its share; rerun the same command to complete it")
    write_jsonl_atomic(out_path, rows)
    for part in parts:
        part.unlink()
    return rows


# ---------------------------------------------------------------- chain of thought
def evaluate_cot(model: Any, tokenizer: Any, records: Iterable[Mapping[str, Any]], stage: str,
                 out_path: str | Path, batch_size: int = 32, max_new_tokens: int = 192) -> list[dict]:
    """Greedy explanation + ``Answer: X`` for each record, parsed by `extract_answer`; resumable."""
    records = list(records)
    prompts = [render_prompt(tokenizer, r) for r in records]

    def run(pending: list[str]) -> Batches:
        for idx, gens in generate_all(model, tokenizer, pending, batch_size=batch_size,
                                      max_new_tokens=max_new_tokens, temperature=0.0):
            yield idx, [(g[0].text, extract_answer(g[0].text), g[0].new_tokens) for g in gens]

    return _evaluate(records, prompts, stage, "cot", out_path, run)


# ---------------------------------------------------------------- letter log-likelihood (lm-eval protocol)
def letter_prompt(record: Mapping[str, Any]) -> str:
    """lm-evaluation-harness ``commonsense_qa`` text: question, ``A. ...`` to ``E. ...``, ``Answer:``."""
    lines = [f"Question: {record['question'].strip()}"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, record["choices"])]
    return "\n".join(lines + ["Answer:"])


def _encode(tokenizer: Any, texts: list[str], add_bos: bool) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=add_bos)["input_ids"]]


def _device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


@torch.inference_mode()
def letter_logprobs(model: Any, tokenizer: Any, contexts: list[str], add_bos: bool = False) -> list[list[float]]:
    """Summed log-probability of " A" ... " E" after each context, in one forward pass for the batch.

    Continuations are tokenized as lm-eval does (``enc(context + " A")[len(enc(context)):]``); when
    all of them are single tokens every question needs one row, otherwise one row per choice.
    """
    model.eval()
    ctx_ids = _encode(tokenizer, contexts, add_bos)
    whole = _encode(tokenizer, [c + " " + letter for c in contexts for letter in LETTERS], add_bos)
    rows: dict[tuple[int, ...], int] = {}  # distinct prefixes -> row index
    targets = []  # per (question, choice): (row, continuation ids)
    for q, ctx in enumerate(ctx_ids):
        for c in range(len(LETTERS)):
            cont = whole[q * len(LETTERS) + c][len(ctx):]
            if not cont:
                raise ValueError(f"continuation ' {LETTERS[c]}' encodes to no tokens after {contexts[q]!r}")
            targets.append((rows.setdefault(tuple(ctx + cont[:-1]), len(rows)), cont))
    seqs = list(rows)
    width, keep = max(map(len, seqs)), max(len(t[1]) for t in targets)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in seqs])  # left padding: ends aligned
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    dev = _device(model)
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(dev), logits_to_keep=keep)
    logp = out.logits[:, -keep:].float().log_softmax(-1).cpu()
    scores = []
    for row, cont in targets:  # continuation token j is predicted at position j - len(cont) from the end
        scores.append(sum(float(logp[row, keep - len(cont) + j, tok]) for j, tok in enumerate(cont)))
    return [scores[i : i + len(LETTERS)] for i in range(0, len(scores), len(LETTERS))]


def evaluate_letter(model: Any, tokenizer: Any, records: Iterable[Mapping[str, Any]], stage: str,
                    out_path: str | Path, batch_size: int = 32, add_bos: bool = False) -> list[dict]:
    """The most likely answer letter per record (lm-eval ``commonsense_qa``, metric ``acc``); resumable.

    ``add_bos=False`` matches lm-eval's default for causal models (no BOS before the context).
    """
    records = list(records)
    prompts = [letter_prompt(r) for r in records]

    def run(pending: list[str]) -> Batches:
        for start in range(0, len(pending), batch_size):
            scores = letter_logprobs(model, tokenizer, pending[start : start + batch_size], add_bos=add_bos)
            best = [LETTERS[max(range(len(s)), key=s.__getitem__)] for s in scores]
            yield list(range(start, start + len(best))), [(b, b, 0) for b in best]

    return _evaluate(records, prompts, stage, "letter", out_path, run)


# ---------------------------------------------------------------- all stages
def validation_records(settings: EvalSettings, data: Any = None) -> list[dict]:
    """The questions to evaluate (``settings.split``): the first ``sample_size`` after a seeded shuffle, or all."""
    if data is None:
        data = load_ecqa(settings.data_source, seed=settings.seed, holdout_size=settings.holdout_size)
    if settings.split not in data:
        raise ValueError(f"the data has no {settings.split!r} split: load it with holdout_size={settings.holdout_size}")
    val = data[settings.split]
    if settings.sample_size is not None:
        val = val.shuffle(seed=settings.seed).select(range(min(settings.sample_size, val.num_rows)))
    return list(val)


def records_path(settings: EvalSettings, stage: str, mode: str) -> Path:
    """Where a stage's records in one mode are kept (``{stage}-{mode}.jsonl``, split-suffixed off validation)."""
    suffix = "" if settings.split == "validation" else f"-{settings.split}"
    return settings.eval_dir / f"{stage}-{mode}{suffix}.jsonl"


def _load_stage(settings: EvalSettings, stage: str) -> tuple[Any, Any] | None:
    """(model, tokenizer) of a stage, or None (with a note) when its adapter is not trained yet."""
    from helpers.models import adapter_base, load_adapter_model, load_model, load_tokenizer

    if stage == "base":
        return load_model(settings.model, precision=settings.precision, quantize=settings.quantize), load_tokenizer(settings.model)
    folder = settings.stage_dir(stage)
    if not (folder / "adapter_config.json").is_file():
        producer = PRODUCED_BY.get(stage) or PRODUCED_BY["dpo" if stage.startswith("dpo") else "sft"]
        print(f"skipping stage {stage!r}: no adapter in {folder} (train it with {producer}, same root)")
        return None
    return load_adapter_model(folder, precision=settings.precision, quantize=settings.quantize), load_tokenizer(adapter_base(folder))


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate_stages(settings: EvalSettings, data: Any = None) -> pd.DataFrame:
    """Evaluate every stage in ``settings.stages`` in every mode; all records as one DataFrame (in every process)."""
    records = validation_records(settings, data)
    rows: list[dict] = []
    for stage in settings.stages:
        loaded = _load_stage(settings, stage)
        if loaded is None:
            continue
        model, tokenizer = loaded
        for mode in settings.modes:
            out = records_path(settings, stage, mode)
            if mode == "cot":
                rows += evaluate_cot(model, tokenizer, records, stage, out, settings.batch_size, settings.max_new_tokens)
            else:
                rows += evaluate_letter(model, tokenizer, records, stage, out, settings.batch_size)
        del loaded, model, tokenizer  # drop every reference before collecting
        _free_memory()
    return pd.DataFrame(rows, columns=list(RECORD_FIELDS))


def results_table(records_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy per model and mode with Wilson CIs, paired McNemar comparisons)."""
    return summarize(records_df), paired_comparisons(records_df)


def save_results(records_df: pd.DataFrame, eval_dir: str | Path) -> list[Path]:
    """Write ``results.csv``, ``results.json`` (summary + comparisons) and ``comparisons.csv``."""
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    summary, comparisons = results_table(records_df)
    paths = [eval_dir / "results.csv", eval_dir / "results.json", eval_dir / "comparisons.csv"]
    summary.to_csv(paths[0], index=False)
    as_json = {name: json.loads(df.to_json(orient="records")) for name, df in
               (("summary", summary), ("comparisons", comparisons))}
    paths[1].write_text(json.dumps(as_json, indent=2) + "\n")
    comparisons.to_csv(paths[2], index=False)
    return paths

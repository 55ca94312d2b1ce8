"""Resumable per-question records: one JSONL file per (variant, mode), appended batch by batch, sharded over processes.

`run_resumable` skips the questions a file already holds (a record of another run raises), runs the rest through a
mode's runner batch by batch and appends each batch, so a rerun after a disconnect loses at most one batch. Under
several processes each one does its `shard` into its `rank_file`; rank 0 merges them (`merge_rank_files`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from helpers import distributed
from helpers.jsonl import append_jsonl as append_records  # the one JSONL writer
from helpers.jsonl import read_jsonl as read_records  # the one JSONL reader
from helpers.jsonl import write_jsonl_atomic

RECORD_FIELDS = (
    "id",
    "variant",
    "mode",
    "prompt",
    "output",
    "parsed",
    "gold",
    "correct",
    "new_tokens",
    "failure",
    "detail",
)
# a runner's batches: (question indices, per index the record's output, parsed, new_tokens, failure, detail)
Batches = Iterator[tuple[list[int], list[dict[str, Any]]]]


def shard(records: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Every ``world``-th record starting at ``rank`` (one share of a multi-process evaluation)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
    return list(records[rank::world])


def rank_file(out_path: str | Path, rank: int) -> Path:
    """Where process ``rank`` of a multi-process evaluation appends its share: ``{variant}-{mode}.rank{r}.jsonl``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.rank{rank}{out_path.suffix}")


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="q", disable=total == 0)


def _done_records(
    paths: Sequence[Path], prompt_of: Mapping[str, str], variant: str, mode: str, repair: Sequence[bool]
) -> dict[str, dict]:
    """id -> the first record in ``paths`` of each question in ``prompt_of``; a record of another run raises."""
    done: dict[str, dict] = {}
    for path, fix in zip(paths, repair):
        for row in read_records(path, repair=fix):
            rid = str(row.get("id"))
            if rid not in prompt_of or rid in done:
                continue
            if (row.get("variant"), row.get("mode"), row.get("prompt")) != (variant, mode, prompt_of[rid]):
                raise ValueError(
                    f"{path} holds a record for {rid} from another run (variant/mode/prompt differ, e.g. another "
                    "base model or prompt format): delete the file or choose another root to re-evaluate"
                )
            done[rid] = row
    return done


def run_resumable(
    questions: Sequence[Mapping[str, Any]],
    prompts: list[str],
    variant: str,
    mode: str,
    out_path: str | Path,
    run: Callable[[list[int]], Batches],
) -> list[dict]:
    """Resume from ``out_path``, run the pending questions batch by batch, append each batch; records in input order.

    ``run`` gets the indices of the pending questions and yields batches of results. Under several processes each
    one does its `shard` into its `rank_file`, and rank 0 merges the shares into ``out_path`` (`merge_rank_files`);
    every process returns all records.
    """
    ids = [str(r["id"]) for r in questions]
    if len(set(ids)) != len(ids):
        raise ValueError("questions contain duplicate ids: evaluate each question once")
    prompt_of = dict(zip(ids, prompts))
    rank, world = distributed.rank_world()
    if world == 1:
        done = _done_records([Path(out_path)], prompt_of, variant, mode, repair=[True])
        mine, write_to, where = range(len(ids)), Path(out_path), f"in {out_path}"
    else:  # records merged earlier count as done; only this process appends to (and repairs) its own file
        mine, write_to = shard(range(len(ids)), rank, world), rank_file(out_path, rank)
        done = _done_records(
            [Path(out_path), write_to], {ids[i]: prompts[i] for i in mine}, variant, mode, repair=[False, True]
        )
        where = f"done by rank {rank} of {world}"
    todo = [i for i in mine if ids[i] not in done]
    if done:
        print(f"{variant}/{mode}: {len(done)} of {len(mine)} questions already {where}, {len(todo)} to go")
    with _progress(len(todo), f"{variant}/{mode}" + (f" rank {rank}" if world > 1 else "")) as bar:
        for idx, results in run(todo):
            batch = []
            for i, res in zip(idx, results):
                gold = questions[i]["answer"]
                batch.append(
                    {
                        "id": ids[i],
                        "variant": variant,
                        "mode": mode,
                        "prompt": prompts[i],
                        "output": res["output"],
                        "parsed": res["parsed"],
                        "gold": gold,
                        "correct": res["parsed"] == gold,
                        "new_tokens": int(res.get("new_tokens", 0)),
                        "failure": res.get("failure"),
                        "detail": res.get("detail"),
                    }
                )
            append_records(write_to, batch)
            done.update((r["id"], r) for r in batch)
            bar.update(len(batch))
    if world == 1:
        return [done[rid] for rid in ids]
    distributed.barrier()  # every share is on disk
    if rank == 0:
        merge_rank_files(out_path, prompt_of, variant, mode)
    distributed.barrier()  # the merged file is complete
    merged = _done_records([Path(out_path)], prompt_of, variant, mode, repair=[False])
    return [merged[rid] for rid in ids]


def merge_rank_files(out_path: str | Path, prompt_of: Mapping[str, str], variant: str, mode: str) -> list[dict]:
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
    new = _done_records(parts, prompt_of, variant, mode, repair=[True] * len(parts))
    rows += [new[rid] for rid in prompt_of if rid in new and rid not in seen]
    missing = [rid for rid in prompt_of if rid not in seen and rid not in new]
    if missing:
        raise RuntimeError(
            f"{variant}/{mode}: {len(missing)} questions (e.g. {missing[0]}) are in no rank file of "
            f"{out_path}: a process did not finish its share; rerun the same command to complete it"
        )
    write_jsonl_atomic(out_path, rows)
    for part in parts:
        part.unlink()
    return rows

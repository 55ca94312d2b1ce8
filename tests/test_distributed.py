"""Steps run as two processes on the CPU: SFT as one DDP run, evaluation sharded and merged.

The commands are the real ones, `accelerate launch --multi_gpu --num_processes 2 -m helpers STEP
SETTINGS.json`, on SmolLM2-135M and the local data, sized to two steps and six questions. On a
machine without GPUs `--multi_gpu` starts the processes and the steps put them on the CPU (gloo);
`accelerate launch --cpu` would start a single process whatever `--num_processes` says, which the
world-size checks here would catch. Each process gets ``MCQ_TEST_THREADS`` torch threads (default 1).

The merge itself (stale rank files, a record of another run) is also checked in-process, without a model.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import child_env
from safetensors import safe_open

from helpers.evaluation import RECORD_FIELDS, merge_rank_files, rank_file, read_records

REPO = Path(__file__).resolve().parents[1]
SMOL = "smollm2-135m"
SEED = 42  # the settings' default: which questions train_sample_size and sample_size pick
N_TRAIN, N_EVAL, PER_DEVICE, STEPS = 16, 6, 2, 2


def launch(step: str, settings: Path, *options: str) -> str:
    """``accelerate launch`` of a step as two processes; its output (both ranks)."""
    with socket.socket() as s:  # a free port: tests running side by side must not share a rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = child_env("ACCELERATE_USE_CPU", "WORLD_SIZE", "RANK", "LOCAL_RANK")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
        "-m",
        "helpers",
        step,
        str(settings),
        *options,
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{step} failed:\n{output[-4000:]}"
    return output


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory, ecqa_dir, ecqa_loaded):
    """SFT for two steps as two processes, then both modes of evaluating it as two processes."""
    root = tmp_path_factory.mktemp("ddp")
    common = dict(model=SMOL, data_source=str(ecqa_dir), root=str(root / "artifacts"))
    sft = root / "sft.json"
    sft.write_text(
        json.dumps(
            dict(
                common,
                train_sample_size=N_TRAIN,
                max_steps=STEPS,
                per_device_train_batch_size=PER_DEVICE,
                gradient_accumulation_steps=1,
                max_length=128,
                lora_r=4,
                lora_alpha=8,
                logging_steps=1,
                save_steps=STEPS,
                warmup_ratio=0.0,
                report_to="none",
            )
        )
    )
    evaluation = root / "eval.json"
    evaluation.write_text(
        json.dumps(
            dict(
                common, variants=["sft"], modes=["cot", "letter"], sample_size=N_EVAL, batch_size=2, max_new_tokens=12
            )
        )
    )
    questions = list(ecqa_loaded[0]["validation"].shuffle(seed=SEED).select(range(N_EVAL))["id"])
    return SimpleNamespace(
        root=root,
        artifacts=root / "artifacts",
        out_dir=root / "artifacts" / "outputs" / "sft",
        eval_dir=root / "artifacts" / "eval",
        eval_settings=evaluation,
        questions=questions,
        sft_output=launch("sft", sft),
        eval_output=launch("eval", evaluation),
    )


@pytest.mark.slow
def test_sft_is_one_run_of_two_processes_saved_once(run):
    summary = json.loads((run.out_dir / "train_summary.json").read_text())
    assert summary["world_size"] == 2, summary
    history = json.loads((run.out_dir / "metrics.json").read_text())
    steps = [h for h in history if "loss" in h]
    assert [h["step"] for h in steps] == list(range(1, STEPS + 1)), "a step lost or logged twice"
    # each step takes a batch from each process: the data was split between them, not trained twice
    assert steps[0]["epoch"] == pytest.approx(2 * PER_DEVICE / N_TRAIN), steps[0]
    assert pd.read_csv(run.out_dir / "metrics.csv")["loss"].notna().sum() == STEPS
    with safe_open(run.out_dir / "adapter_model.safetensors", "pt") as f:
        assert any("lora_A" in k for k in f.keys())
    assert sorted(p.name for p in run.out_dir.glob("checkpoint-*")) == [f"checkpoint-{STEPS}"]
    assert summary["tokens_per_s"] > 0 and (run.out_dir / "settings.json").is_file()
    assert run.sft_output.count("sft finished in") == 2, "both processes ran to the end"


@pytest.mark.slow
def test_evaluation_is_sharded_and_merged_once_per_question(run):
    """Each rank did three questions; the merged files hold each question once, in question order; the rank
    files are gone (merged and deleted); the table is over all six questions."""
    for mode in ("cot", "letter"):
        rows = jsonl(run.eval_dir / f"sft-{mode}.jsonl")
        assert [r["id"] for r in rows] == run.questions, mode
        assert all(tuple(r) == RECORD_FIELDS and r["variant"] == "sft" and r["mode"] == mode for r in rows)
    assert sorted(p.name for p in run.eval_dir.glob("*.rank*")) == []
    for rank in (0, 1):
        assert f"sft/cot rank {rank}" in run.eval_output, "both ranks evaluated their share"
    results = pd.read_csv(run.eval_dir / "results.csv")
    assert sorted(results["mode"]) == ["cot", "letter"] and (results["n"] == N_EVAL).all(), results


@pytest.mark.slow
def test_evaluation_resumes_from_merged_records_and_a_rank_file(run):
    """A run killed before its merge: two records already merged, one in rank 1's file (plus a line cut off).
    The rerun computes only the other three and keeps what was there."""
    merged = run.eval_dir / "sft-cot.jsonl"
    rows = jsonl(merged)
    merged.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))  # ranks 0 and 1 had one merged record each
    part = rank_file(merged, 1)
    part.write_text(json.dumps(rows[3]) + "\n" + json.dumps(rows[5])[:40])  # rank 1's share: questions 1, 3, 5
    output = launch("eval", run.eval_settings, "--modes", "cot")
    assert "sft/cot: 1 of 3 questions already done by rank 0 of 2, 2 to go" in output, output[-3000:]
    assert "sft/cot: 2 of 3 questions already done by rank 1 of 2, 1 to go" in output, output[-3000:]
    after = jsonl(merged)
    assert [r["id"] for r in after] == run.questions and not part.exists()
    assert [after[i] for i in (0, 1, 3)] == [rows[i] for i in (0, 1, 3)], "records kept, not redone"


# ---------------------------------------------------------------- the merge, in-process
def record(i: int, prompt: str = "p") -> dict:
    values = {
        "id": f"q{i}",
        "variant": "sft",
        "mode": "cot",
        "prompt": f"{prompt}{i}",
        "output": "Answer: A",
        "parsed": "A",
        "gold": "A",
        "correct": True,
        "new_tokens": 3,
        "failure": None,
        "detail": None,
    }
    return {k: values[k] for k in RECORD_FIELDS}


def write(path: Path, rows: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_merge_joins_rank_files_once_per_question_in_question_order(tmp_path):
    out = tmp_path / "sft-cot.jsonl"
    prompt_of = {f"q{i}": f"p{i}" for i in range(7)}
    write(out, [record(4), record(0)], tail='{"id": "q5", "mo')  # kept first, as they were; the cut line dropped
    write(rank_file(out, 0), [record(2), record(6), record(0)])
    write(rank_file(out, 1), [record(5), record(1), record(3), record(2)])  # q2 twice: a stale share, kept once
    write(rank_file(out, 2), [record(9)])  # a question this evaluation does not ask: left out
    (tmp_path / "sft-cot-holdout.rank0.jsonl").write_text("not this file's\n")
    merge_rank_files(out, prompt_of, "sft", "cot")
    assert [r["id"] for r in read_records(out)] == ["q4", "q0", "q1", "q2", "q3", "q5", "q6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft-cot-holdout.rank0.jsonl", "sft-cot.jsonl"]


def test_merge_refuses_a_record_of_another_run_and_a_missing_question(tmp_path):
    out = tmp_path / "sft-cot.jsonl"
    prompt_of = {f"q{i}": f"p{i}" for i in range(2)}
    write(rank_file(out, 0), [record(0, prompt="another format ")])
    with pytest.raises(ValueError, match="another run"):
        merge_rank_files(out, prompt_of, "sft", "cot")
    write(rank_file(out, 0), [record(0)])
    with pytest.raises(RuntimeError, match="did not finish its share"):
        merge_rank_files(out, prompt_of, "sft", "cot")
    assert rank_file(out, 0).exists() and not out.exists(), "nothing merged or deleted on a failure"

"""Kill -9 in the middle of every step, then run the same command again: it finishes, and what it leaves is
what an uninterrupted run leaves. SFT and DPO log every step from 1 to max_steps exactly once and save the
adapter and metrics; on-policy sampling and evaluation hold exactly one record per question, with the records
written before the kill kept, not redone. A checkpoint cut off on disk is skipped with a message, not a crash.

Each step runs as its real command line (`python -m helpers STEP SETTINGS.json`) in a subprocess, on
SmolLM2-135M and the local data, sized to a few steps, questions and tokens. The subprocesses get torch
threads from ``MCQ_TEST_THREADS`` (default 1, as the in-process tests), no wandb and no Hub access.
Checks of `last_valid_checkpoint` on fake checkpoints are in test_training.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import child_env
from safetensors import safe_open

from helpers import pairs as P
from helpers import provenance
from helpers.evaluation import RECORD_FIELDS

REPO = Path(__file__).resolve().parents[1]
SMOL = "smollm2-135m"
TRAIN = dict(
    max_steps=6,
    save_steps=2,
    per_device_train_batch_size=1,
    gradient_accumulation_steps=1,
    gradient_checkpointing=False,
    logging_steps=1,
    warmup_ratio=0.0,
    report_to="none",
)
SEED = 42  # the settings' default: which questions train_sample_size and sample_size pick

pytestmark = pytest.mark.slow


def write_settings(folder: Path, name: str, **fields) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(fields, indent=1))
    return path


def command(step: str, settings: Path, options: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "helpers", step, str(settings), *options]


def kill_when(step: str, settings: Path, ready: Callable[[], bool], *options: str, timeout: float = 300) -> str:
    """Start the step, SIGKILL it as soon as ``ready()`` holds; its output up to then."""
    log = settings.with_suffix(".killed.log")
    with log.open("w") as out:
        proc = subprocess.Popen(
            command(step, settings, options), cwd=REPO, env=child_env(), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert proc.poll() is None, (
                    f"{step} ended (status {proc.returncode}) before the kill:\n{log.read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, f"{step} not ready to kill after {timeout} s"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{step} was not killed mid-run (status {proc.returncode})"
    return log.read_text()


def rerun(step: str, settings: Path, *options: str) -> str:
    """Run the step to the end; its output."""
    done = subprocess.run(
        command(step, settings, options), cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{step} rerun failed:\n{output[-4000:]}"
    return output


def logged_steps(out_dir: Path) -> list[int]:
    """Steps with a training loss in ``metrics.json`` (written at every log, atomically)."""
    try:
        history = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return []
    return [h["step"] for h in history if "loss" in h]


def lines(path: Path) -> list[str]:
    """The complete lines of a JSONL file (a line cut off by the kill is not counted)."""
    if not path.is_file():
        return []
    data = path.read_text(encoding="utf-8")
    return data.split("\n")[:-1]


def assert_training_finished(out_dir: Path, max_steps: int, output: str, *log_keys: str) -> int:
    """Resumed from a checkpoint, every step logged once, adapter and metrics saved; the step it resumed at."""
    resumed = [line for line in output.splitlines() if line.startswith(f"resuming from {out_dir}/checkpoint-")]
    assert resumed, f"the rerun did not resume from a checkpoint:\n{output[-3000:]}"
    step = int(resumed[0].rsplit("-", 1)[1])
    state = json.loads((out_dir / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    history = json.loads((out_dir / "metrics.json").read_text())
    assert [h["step"] for h in history if "loss" in h] == list(range(1, max_steps + 1)), "a step lost or logged twice"
    for key in log_keys:
        assert all(key in h for h in history if "loss" in h), key
    csv = pd.read_csv(out_dir / "metrics.csv")
    assert csv["loss"].notna().sum() == max_steps
    summary = json.loads((out_dir / "train_summary.json").read_text())
    assert summary["resumed_from"] == str(out_dir / f"checkpoint-{step}")
    with safe_open(out_dir / "adapter_model.safetensors", "pt") as f:
        assert any("lora_A" in k for k in f.keys())
    assert (out_dir / "adapter_config.json").is_file() and (out_dir / "settings.json").is_file()
    return step


# ---------------------------------------------------------------- SFT


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, ecqa_dir):
    """SFT killed after step 3 was logged (checkpoint-2 is on disk by then), then rerun: the root every later
    step here starts from, and what each run printed."""
    root = tmp_path_factory.mktemp("faults")
    settings = write_settings(
        root,
        "sft",
        model=SMOL,
        data_source=str(ecqa_dir),
        root=str(root / "artifacts"),
        train_sample_size=12,
        max_length=256,
        lora_r=4,
        lora_alpha=8,
        **TRAIN,
    )
    out_dir = root / "artifacts" / "outputs" / "sft"
    killed = kill_when("sft", settings, lambda: max(logged_steps(out_dir), default=0) >= 3)
    steps_before = logged_steps(out_dir)
    return SimpleNamespace(
        root=root,
        artifacts=root / "artifacts",
        settings=settings,
        out_dir=out_dir,
        killed=killed,
        steps_before=steps_before,
        output=rerun("sft", settings),
    )


def test_sft_killed_midway_resumes_and_finishes(sft_run):
    step = assert_training_finished(sft_run.out_dir, 6, sft_run.output, "mean_token_accuracy")
    assert 2 <= step <= max(sft_run.steps_before) < 6, (step, sft_run.steps_before)


def test_cut_off_checkpoint_is_skipped_and_training_resumes_before_it(sft_run, tmp_path):
    """The newest checkpoint's adapter weights cut in half (a copy to a Drive that died, say): the rerun says so,
    resumes from the one before and trains on to max_steps."""
    out_dir = tmp_path / "artifacts" / "outputs" / "sft"
    shutil.copytree(sft_run.out_dir, out_dir)
    weights = out_dir / "checkpoint-6" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    output = rerun("sft", sft_run.settings, "--root", str(tmp_path / "artifacts"), "--max_steps", "8")
    assert (
        f"skipping incomplete checkpoint {out_dir / 'checkpoint-6'} (adapter_model.safetensors is cut off)" in output
    )
    assert assert_training_finished(out_dir, 8, output) == 4


# ---------------------------------------------------------------- on-policy pairs


def test_on_policy_sampling_killed_midway_keeps_its_samples_and_finishes(sft_run, ecqa_loaded, ecqa_dir):
    """Two samples per question, one question per batch; killed after two questions were saved."""
    settings = write_settings(
        sft_run.root,
        "pairs",
        model=SMOL,
        data_source=str(ecqa_dir),
        root=str(sft_run.artifacts),
        train_sample_size=6,
        strategy="on_policy",
        samples_per_question=2,
        when_all_agree="offline",  # a 2-step SFT model is rarely right: keep a pair for every question
        batch_size=2,
        max_new_tokens=16,
    )
    pairs_path = sft_run.artifacts / "data" / "dpo_pairs.jsonl"
    samples = P.samples_path(SimpleNamespace(pairs=pairs_path))
    kill_when("pairs", settings, lambda: len(lines(samples)) >= 2)
    before = lines(samples)
    assert not pairs_path.exists(), "the pairs file is written once, at the end"
    rerun("pairs", settings)

    questions = set(ecqa_loaded[0]["train"].shuffle(seed=SEED).select(range(6))["id"])
    after = lines(samples)
    rows = [json.loads(line) for line in after]
    assert len(rows) == 6 and {r["id"] for r in rows} == questions, "one line of samples per question"
    assert all(len(r["samples"]) == 2 for r in rows)
    assert set(before) <= set(after), "samples saved before the kill were redone"
    built = [json.loads(line) for line in lines(pairs_path)]
    ids = [p["id"] for p in built]
    assert len(ids) == len(set(ids)) and set(ids) <= questions and all(tuple(p) == P.PAIR_KEYS for p in built)
    summary = json.loads(pairs_path.with_name("dpo_pairs_summary.json").read_text())
    assert summary["questions"] == 6 and summary["kept"] == len(built) > 0
    assert summary["kept"] + sum(summary["dropped"].values()) == 6 == sum(summary["outcomes"].values())


# ---------------------------------------------------------------- DPO


def test_dpo_killed_midway_resumes_and_finishes(sft_run, ecqa_loaded, smol_tokenizer, ecqa_dir):
    pairs_path = sft_run.artifacts / "data" / "offline_pairs.jsonl"
    P.write_pairs(P.build_offline_pairs(smol_tokenizer, ecqa_loaded[0]["train"].select(range(6)), seed=0), pairs_path)
    provenance.write(pairs_path, {"strategy": "offline", "model": SMOL})  # what DPO checks before it trains
    settings = write_settings(
        sft_run.root,
        "dpo",
        model=SMOL,
        data_source=str(ecqa_dir),
        root=str(sft_run.artifacts),
        pairs_file=str(pairs_path),
        max_length=384,
        **TRAIN,
    )
    out_dir = sft_run.artifacts / "outputs" / "dpo"
    kill_when("dpo", settings, lambda: max(logged_steps(out_dir), default=0) >= 3)
    steps_before = logged_steps(out_dir)
    step = assert_training_finished(out_dir, 6, rerun("dpo", settings), "rewards/margins", "rewards/accuracies")
    assert 2 <= step <= max(steps_before) < 6, (step, steps_before)


# ---------------------------------------------------------------- evaluation


def test_evaluation_killed_midway_holds_one_record_per_question(sft_run, ecqa_loaded, ecqa_dir):
    """Base and SFT, CoT and letter, six questions in batches of two; killed after the first batch was saved."""
    settings = write_settings(
        sft_run.root,
        "eval",
        model=SMOL,
        data_source=str(ecqa_dir),
        root=str(sft_run.artifacts),
        variants=["base", "sft"],
        modes=["cot", "letter"],  # (the default now adds cloze)
        sample_size=6,
        batch_size=2,
        max_new_tokens=16,
    )
    eval_dir = sft_run.artifacts / "eval"
    kill_when("eval", settings, lambda: len(lines(eval_dir / "base-cot.jsonl")) >= 2)
    before = lines(eval_dir / "base-cot.jsonl")
    assert not (eval_dir / "results.csv").exists()
    output = rerun("eval", settings)
    assert f"base/cot: {len(before)} of 6 questions already in" in output, output[-3000:]

    questions = set(ecqa_loaded[0]["validation"].shuffle(seed=SEED).select(range(6))["id"])
    for variant in ("base", "sft"):
        for mode in ("cot", "letter"):
            rows = [json.loads(line) for line in lines(eval_dir / f"{variant}-{mode}.jsonl")]
            ids = [r["id"] for r in rows]
            assert len(ids) == 6 and set(ids) == questions, (
                f"{variant}/{mode}: {len(ids)} records, {len(set(ids))} ids"
            )
            assert all(tuple(r) == RECORD_FIELDS and r["variant"] == variant and r["mode"] == mode for r in rows)
    assert set(before) <= set(lines(eval_dir / "base-cot.jsonl")), "records saved before the kill were redone"
    results = pd.read_csv(eval_dir / "results.csv")
    assert len(results) == 4 and (results["n"] == 6).all(), results

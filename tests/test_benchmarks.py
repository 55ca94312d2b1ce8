"""The benchmark scripts run end to end (on CPU, toy sizes) and write the rows the README cites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers.settings import PairSettings, SFTSettings

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> str:
    threads = os.environ.get("MCQ_TEST_THREADS", "1")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_train_speed_writes_seed_and_default_rows_with_ratios(tmp_path, ecqa_dir):
    out = run(
        "train_speed.py",
        "--tiny",
        "--stages",
        "sft",
        "--configs",
        "seed",
        "default",
        "--steps",
        "2",
        "--seed-steps",
        "2",
        "--precision",
        "bf16",
        "--data",
        str(ecqa_dir),
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "res"),
    )
    rows = json.loads(next((tmp_path / "res").glob("*-cpu.json")).read_text())
    assert [(r["stage"], r["config"]) for r in rows] == [("sft", "seed"), ("sft", "default")]
    seed, default = rows
    assert (seed["micro_batch"], seed["grad_accum"]) == (1, 16)
    assert default["micro_batch"] * default["grad_accum"] == 16  # defaults keep the seed's effective batch
    assert seed["tokens"] > 0 and default["tokens"] > 0 and seed["steps"] == default["steps"] == 2
    assert default["ratio_to_seed"] == round(default["tokens_per_s"] / seed["tokens_per_s"], 2)
    assert "x seed" in out and "rows written to" in out


def test_generation_speed_compares_paths_on_the_same_questions(tmp_path, ecqa_dir):
    out = run(
        "generation_speed.py",
        "--questions",
        "3",
        "--batch-size",
        "3",
        "--max-new-tokens",
        "6",
        "--variants",
        "project",
        "dynamic",
        "--data",
        str(ecqa_dir),
        "--out",
        str(tmp_path),
    )
    row = json.loads(next(tmp_path.glob("*-generation-3q.json")).read_text())
    assert set(row["variants"]) == {"project", "dynamic"}
    for run_ in row["variants"].values():
        assert 0 < run_["batched_tokens"] <= 3 * 6
        assert run_["ratio"] == round(row["single_s"] / run_["batched_s"], 1)
    assert "one at a time" in out


def test_peer_speed_runs_each_side_in_its_own_process_and_padding_free_trains_on_the_same_tokens(
    tmp_path, ecqa_dir, monkeypatch
):
    out = run(
        "peer_speed.py",
        "--tiny",
        "--sides",
        "project",
        "padding-free",
        "gc-half",
        "dropout-0",
        "--lora-modules",
        "qkvo",
        "--stages",
        "sft",
        "--precision",
        "bf16",
        "--steps",
        "2",
        "--dpo-steps",
        "2",
        "--warmup-steps",
        "0",  # the warm-up has its own tests below (one process less here)
        "--data",
        str(ecqa_dir),
        "--work",
        str(tmp_path / "w"),
        "--out",
        str(tmp_path / "res"),
    )
    rows = json.loads(next((tmp_path / "res").glob("*-cpu-peers.json")).read_text())
    assert "warm-up" not in out and {r["warmup_steps"] for r in rows} == {0}
    assert [r["position"] for r in rows] == [0, 1, 2, 3]
    assert [(r["stage"], r["config"]) for r in rows] == [
        ("sft", "project"),
        ("sft", "padding-free"),
        ("sft", "gc-half"),
        ("sft", "dropout-0"),
    ]
    project, padding_free, gc_half, dropout_0 = rows
    assert [r["lora_dropout"] for r in rows] == [SFTSettings().lora_dropout] * 3 + [0.0]  # only that side changes it
    assert SFTSettings().lora_dropout > 0 and dropout_0["tokens"] == project["tokens"]
    assert {r["offloaded_layers"] for r in rows} == {0}  # without a GPU the default keeps nothing elsewhere
    assert {r["liger_modules"] for r in rows} == {0}  # and runs no Triton kernel
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import train_speed as ts

    h, kv, r = ts.TINY["hidden_size"], ts.TINY["num_key_value_heads"] * ts.TINY["head_dim"], SFTSettings().lora_r
    qkvo = ts.TINY["num_hidden_layers"] * r * ((h + h) * 2 + (h + kv) * 2)  # LoRA A and B on q, o (h->h), k, v (h->kv)
    assert {(x["lora_modules"], x["trainable_params"]) for x in rows} == {("qkvo", qkvo)}  # every side, that shape
    assert project["checkpointed_layers"] > 1 and gc_half["checkpointed_layers"] == project["checkpointed_layers"] // 2
    assert gc_half["tokens"] == project["tokens"] and gc_half["first_loss"] == pytest.approx(
        project["first_loss"], abs=0.01
    )
    assert project["micro_batch"] == 16 and project["steps"] == 2 and project["tokens"] > 0
    assert padding_free["tokens"] == project["tokens"]  # no pad tokens are counted either way: same data
    assert padding_free["first_loss"] == pytest.approx(project["first_loss"], abs=0.01)  # same loss on the same batch
    assert "steady x project" in out and "rows written to" in out


def test_generation_1b_forces_full_length_and_rows_carry_the_bound_columns(tmp_path, ecqa_dir):
    run(
        "generation_1b.py",
        "--tiny",
        *("--precision", "bf16", "--paths", "merged-generate", "merged-continuous", "--batches", "4", "8"),
        *("--full-batches", "1", "--max-new-tokens", "3"),
        *("--tokenizer", "smollm2-135m", "--data", str(ecqa_dir)),
        *("--work", str(tmp_path / "w"), "--out", str(tmp_path)),
    )
    rows = json.loads(next(tmp_path.glob("*-cpu-generation-bound.json")).read_text())
    assert {(r["stage"], r["path"], r["sequences_per_step"]) for r in rows} == {
        (s, p, b) for s in ("sampling", "cot-eval") for p in ("merged-generate", "merged-continuous") for b in (4, 8)
    }
    for r in rows:
        k = PairSettings().samples_per_question if r["stage"] == "sampling" else 1  # the project's settings
        assert r["k"] == k and r["sequences"] == max(1, r["sequences_per_step"] // k) * k
        assert r["new_tokens"] == r["sequences"] * 3  # random weights: every row forced to max_new_tokens
        assert r["model_size"] == "toy" and r["card"] == "cpu" and r["bound_tokens_per_s"] is None
        assert r["ms_per_step"] > 0 and r["tokens_per_s"] > 0


def test_the_bound_is_weights_and_cache_read_or_flops_done(monkeypatch):
    """At Llama-3.2-1B shape a T4 decode step for one sequence reads 2.47 GB of fp16 weights at 320 GB/s (~7.7 ms);
    for 256 sequences at 250 tokens of context the KV cache read (2.1 GB) still outweighs the FLOPs."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import generation_1b as g
    import train_speed as ts
    from transformers import LlamaConfig

    params, kv, attn = g.model_figures(LlamaConfig(**ts.LLAMA_32_1B))
    assert 1.23e9 < params < 1.24e9 and kv == 2 * 16 * 8 * 64 and attn == 4 * 16 * 32 * 64
    t4 = g.card_figures("Tesla T4")
    one = g.bound(1, 0, params, kv * 2, 2, attn, t4)
    assert 1 / one == pytest.approx(params * 2 / 320e9)  # ms per step of one sequence, no cache
    many = g.bound(256, 250, params, kv * 2, 2, attn, t4)
    read, flops = params * 2 + 256 * 250 * kv * 2, 256 * (2 * params + attn * 250)
    assert read / 320e9 > flops / 65e12 and many == pytest.approx(256 / (read / 320e9))
    assert 17_000 < many < 19_000
    assert g.card_figures("NVIDIA H100 80GB HBM3") == (989e12, 3.35e12) and g.card_figures("cpu") is None


def _peer_speed(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import peer_speed

    return peer_speed


def test_peer_speed_warms_up_the_first_side_and_unsloth_once_before_timing_anything(tmp_path, monkeypatch, capsys):
    """The first side and Unsloth run once untimed before any timed side (a side named twice is warmed once and
    timed twice, A-B-A); the table's ratio is the steady one. Processes are replaced by a recorder."""
    ps = _peer_speed(monkeypatch)
    calls = []

    def fake_side(args, side, seconds, phase="timed"):
        calls.append((side, phase))
        steady = {"project": 1000.0, "unsloth": 1500.0}[side]
        row = dict(stage="sft", dtype="bf16", config=side, tokens_per_s=500.0, steady_tokens_per_s=steady)
        return [] if phase != "timed" else [{**row, "peak_gib": 1.0, "allocated_before_gib": 0.25}]

    monkeypatch.setattr(ps, "prepare", lambda args: {})
    monkeypatch.setattr(ps, "run_side", fake_side)
    common = ["--tiny", "--stages", "sft", "--work", str(tmp_path / "w")]
    sides = ["--sides", "project", "unsloth", "project"]
    monkeypatch.setattr(sys, "argv", ["peer_speed.py", *sides, *common, "--out", str(tmp_path / "a")])
    ps.main()
    w, t = "warmup", "timed"
    assert calls == [("project", w), ("unsloth", w), ("project", t), ("unsloth", t), ("project", t)]
    rows = json.loads(next((tmp_path / "a").glob("*-peers.json")).read_text())
    assert [(r["config"], r["position"], r["warmup_steps"]) for r in rows] == [
        ("project", 0, 3),
        ("unsloth", 1, 3),
        ("project", 2, 3),
    ]
    unsloth_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("sft   bf16  unsloth")
    )
    # steady 1,500 against 1,000 (whole-call rates are equal); the peak, and what earlier rows left allocated
    assert unsloth_line.split()[-3:] == ["1.50", "1.00", "0.25"]
    calls.clear()
    monkeypatch.setattr(
        sys, "argv", ["peer_speed.py", *sides, *common, "--warmup-steps", "0", "--out", str(tmp_path / "b")]
    )
    ps.main()
    assert calls == [("project", t), ("unsloth", t), ("project", t)]
    calls.clear()
    profiled = ["--warmup-steps", "0", "--profile-steps", "2", "--out", str(tmp_path / "c")]
    monkeypatch.setattr(sys, "argv", ["peer_speed.py", *sides, *common, *profiled])
    ps.main()  # each side profiled once, after every timed row
    assert calls == [("project", t), ("unsloth", t), ("project", t), ("project", "profile"), ("unsloth", "profile")]
    rows = json.loads(next((tmp_path / "c").glob("*-peers.json")).read_text())
    assert len(rows) == 3  # a profile run keeps no rows
    calls.clear()
    recorded = ["--warmup-steps", "0", "--profile-steps", "2", "--memory-steps", "2", "--out", str(tmp_path / "d")]
    monkeypatch.setattr(sys, "argv", ["peer_speed.py", *sides, *common, *recorded])
    ps.main()  # each side's allocations recorded once, after everything else (recording slows every step)
    assert calls[-4:] == [("project", "profile"), ("unsloth", "profile"), ("project", "memory"), ("unsloth", "memory")]


def test_peer_speed_warm_up_process_runs_few_steps_and_keeps_no_rows(tmp_path, monkeypatch, capsys):
    ps = _peer_speed(monkeypatch)
    seen, envs = [], []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        envs.append(kw["env"])
        (tmp_path / "rows-project.json").write_text(json.dumps([{"stage": "sft"}]))
        return subprocess.CompletedProcess(cmd, 0, "out", "")

    monkeypatch.setattr(ps.subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "argv", ["peer_speed.py", "--steps", "16"])
    args = ps.argparse.Namespace(
        work=tmp_path,
        unsloth_site=None,
        warmup_steps=2,
        profile_steps=4,
        out=tmp_path / "o",
        tag="t",
        steps=16,
        dpo_steps=5,
    )
    assert ps.run_side(args, "project", 60, phase="warmup") == []
    assert seen[0][-4:] == ["--steps", "2", "--dpo-steps", "2"]  # after the caller's own --steps: it wins
    assert (tmp_path / "log-project-warmup.txt").is_file() and not (tmp_path / "log-project.txt").exists()
    assert ps.run_side(args, "project", 60) == [{"stage": "sft"}] and seen[1][-2:] == ["--steps", "16"]
    assert ps.run_side(args, "project", 60, phase="profile") == []
    assert seen[2][-4:] == ["--steps", "7", "--dpo-steps", "5"]  # 3 warm-up steps, then 4 profiled; no more than timed
    assert envs[2]["STEP_PROFILE"] == str(tmp_path / "o" / "profile-t" / "project") and "STEP_PROFILE" not in envs[0]
    assert (tmp_path / "log-project-profile.txt").is_file()
    args.memory_steps = 4
    assert ps.run_side(args, "project", 60, phase="memory") == []
    assert seen[3][-4:] == ["--steps", "4", "--dpo-steps", "4"] and "STEP_PROFILE" not in envs[3]
    assert envs[3]["STEP_MEMORY"] == str(tmp_path / "memory-t" / "project")
    monkeypatch.setattr(
        ps.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "Boom: no GPU")
    )
    assert ps.run_side(args, "project", 60, phase="warmup") == []
    assert capsys.readouterr().out.strip().endswith("FAILED (1): Boom: no GPU")  # said, not only logged


def test_step_clock_profiles_the_steps_after_its_warm_up_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import train_speed as ts

    state = types.SimpleNamespace(num_input_tokens_seen=0)
    for folder in (None, tmp_path / "prof"):
        if folder is None:
            monkeypatch.delenv(ts.PROFILE_ENV, raising=False)
        else:
            monkeypatch.setenv(ts.PROFILE_ENV, str(folder))
        clock = ts.StepClock("sft-default-bf16")
        for step in range(ts.WARMUP_STEPS + 2):
            torch.ones(64, 64) @ torch.ones(64, 64)
            state.num_input_tokens_seen += 10
            clock.on_step_end(None, state, None)
            assert (clock.profiler is not None) == (folder is not None and step + 1 >= ts.WARMUP_STEPS)
        clock.on_train_end(None, state, None)
    assert [p.name for p in tmp_path.rglob("*.txt")] == ["sft-default-bf16.txt"]
    text = (tmp_path / "prof" / "sft-default-bf16.txt").read_text()
    assert text.startswith("2 profiled steps, 20 tokens in") and "aten::mm" in text
    assert "sorted by self_cpu_time_total" in text  # the host's table (on a GPU the device's comes first)


def test_memory_peak_replays_the_trace_to_its_peak_and_groups_what_is_alive_by_the_allocating_code(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import memory_peak

    def frames(*where):  # innermost first, as PyTorch records them
        return [{"filename": f, "line": line, "name": name} for f, line, name in where]

    site = "/opt/torch/lib/python3.12/site-packages"  # an environment in a folder named torch: only torch/ is torch
    torch_op = (f"{site}/torch/nn/functional.py", 10, "dropout")
    lora = (f"{site}/peft/tuners/lora/bnb.py", 500, "forward")
    loss = ("/venv/lib/python3.12/site-packages/trl/trainer/sft_trainer.py", 900, "compute_loss")
    gib = 2**30
    trace = [
        {"action": "alloc", "addr": 1, "size": gib, "frames": frames(torch_op, lora)},
        {"action": "alloc", "addr": 2, "size": gib, "frames": frames(torch_op, lora)},
        {"action": "free_requested", "addr": 1, "size": gib, "frames": []},
        {"action": "free_completed", "addr": 1, "size": gib, "frames": []},
        {"action": "free_completed", "addr": 99, "size": gib // 2, "frames": []},  # allocated before recording
        {"action": "alloc", "addr": 3, "size": 2 * gib, "frames": frames(loss)},  # the peak: 0.5 + 1 + 2 + 1 GiB
        {"action": "free_completed", "addr": 3, "size": 2 * gib, "frames": []},
        {"action": "alloc", "addr": 4, "size": gib, "frames": frames(torch_op)},  # after the peak: not in it
    ]
    text = memory_peak.peak_summary(
        {"device_traces": [trace]}, baseline=gib, reported_peak=int(3.5 * gib), torch_dir=f"{site}/torch"
    )
    assert (
        text.splitlines()[0] == "peak 3.500 GiB at allocator event 5 of 7 (torch.cuda.max_memory_allocated: 3.500 GiB)"
    )
    assert "still alive: 0.500 GiB" in text and "alive at the peak: 3.000 GiB, 2 blocks" in text
    table = text.split("allocated by (innermost frame outside torch)\n")[1].splitlines()
    assert table == [
        "   2.000       1  trl/trainer/sft_trainer.py:900 compute_loss",
        "   1.000       1  tuners/lora/bnb.py:500 forward",
    ]
    assert "WARNING" not in text
    empty = memory_peak.peak_summary({"device_traces": []}, baseline=0)
    assert empty.startswith("peak 0.000 GiB at allocator event 0 of 0")


@pytest.mark.parametrize(("offload", "every_n_layers", "expected"), [(False, 1, 0), (True, 1, 3), (True, 2, 2)])
def test_rows_count_the_offloaded_layers_from_the_model(monkeypatch, offload, every_n_layers, expected):
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import train_speed as ts

    shape = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, vocab_size=64)
    model = LlamaForCausalLM(LlamaConfig(**shape))
    assert ts.offloaded_layers(model) == 0  # no checkpointing
    model.gradient_checkpointing_enable(offload=offload, every_n_layers=every_n_layers)
    assert ts.offloaded_layers(model) == expected

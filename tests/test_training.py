"""Tests for helpers.training on SmolLM2-135M on CPU: the labels TRL trains on, a short real SFT run,
resuming from checkpoints, and the wandb path.

The real-model tests are marked slow. Torch runs them on ``MCQ_TEST_THREADS`` threads (default 1):
on a 2-core machine shared with other jobs, one thread was 5x faster than two (oversubscription).
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import sys
import time
import weakref
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from helpers import checkpoints, generation, models, prompts, provenance, training
from helpers.answers import extract_answer
from helpers.settings import DPOSettings, SFTSettings

SMOL = "smollm2-135m"
ANSWER_LINE_AT_END = re.compile(r"(?:^|\n)Answer: ([A-E])$")


pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(autouse=True)
def no_wandb_unless_asked(monkeypatch):
    """report_to="auto" must not pick up a wandb key from the developer's shell."""
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)


def settings(root: Path, **changes) -> SFTSettings:
    """Small CPU settings: no gradient checkpointing (slower on CPU), log every step, no wandb."""
    base = dict(
        model=SMOL,
        root=str(root),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        max_length=256,
        gradient_checkpointing=False,
        logging_steps=1,
        save_steps=1000,
        warmup_ratio=0.0,
        report_to="none",
    )
    return SFTSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def short_train(ecqa_loaded, smol_tokenizer):
    """Real train records whose target fits in 48 tokens, so 64 new tokens can hold a whole answer."""
    train = ecqa_loaded[0]["train"].select(range(1_000))
    keep = [
        i
        for i, r in enumerate(train)
        if len(
            smol_tokenizer(prompts.target_text(r["explanation"], r["answer"]), add_special_tokens=False)["input_ids"]
        )
        <= 48
    ]
    return train.select(keep)


# ---------------------------------------------------------------- checkpoints (no model)


def fake_checkpoint(
    folder: Path,
    step: int,
    optimizer: bool = True,
    weights: bytes | None = None,
    state: str | None = None,
    scheduler: bool = True,
    adapter_config: bool = True,
    cut: str | None = None,
) -> Path:
    """A checkpoint folder with the files a resume reads, each whole unless told otherwise (``cut`` halves one)."""
    import torch
    from safetensors.torch import save_file

    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}) if state is None else state)
    save_file({"lora_A": torch.zeros(4, 8)}, ckpt / "adapter_model.safetensors")
    if weights is not None:
        (ckpt / "adapter_model.safetensors").write_bytes(weights)
    if adapter_config:
        (ckpt / "adapter_config.json").write_text(json.dumps({"r": 4}))
    for name, keep in (("optimizer.pt", optimizer), ("scheduler.pt", scheduler)):
        if keep:
            torch.save({"state": torch.ones(16)}, ckpt / name)
    if cut:
        data = (ckpt / cut).read_bytes()
        (ckpt / cut).write_bytes(data[: len(data) // 2])  # what a kill in the middle of the write leaves
    return ckpt


def test_last_valid_checkpoint_is_numerically_newest(tmp_path):
    for step in (2, 9, 10):
        fake_checkpoint(tmp_path, step)
    assert checkpoints.last_valid_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert checkpoints.last_valid_checkpoint(tmp_path / "missing") is None
    assert checkpoints.last_valid_checkpoint(tmp_path / "checkpoint-2" / "trainer_state.json") is None


@pytest.mark.parametrize(
    "broken, reason",
    [
        (dict(optimizer=False), "no optimizer state"),
        (dict(weights=b""), "no weights"),
        (dict(state="{garbage"), "Expecting property name"),
        (dict(cut="trainer_state.json"), "Unterminated string"),
        (dict(state="{}"), "trainer_state.json has no global_step"),
        (dict(cut="adapter_model.safetensors"), "adapter_model.safetensors is cut off"),
        (dict(adapter_config=False), "adapter_config.json"),
        (dict(scheduler=False), "no scheduler state"),
        (dict(cut="optimizer.pt"), "optimizer.pt is cut off"),
    ],
    ids=[
        "no-optimizer",
        "empty-weights",
        "garbage-state",
        "truncated-state",
        "state-without-step",
        "truncated-weights",
        "no-adapter-config",
        "no-scheduler",
        "truncated-optimizer",
    ],
)
def test_broken_checkpoint_is_skipped_with_a_message(tmp_path, capsys, broken, reason):
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4, **broken)
    assert checkpoints.last_valid_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    out = capsys.readouterr().out
    assert f"skipping incomplete checkpoint {tmp_path / 'checkpoint-4'}" in out and reason in out


# ---------------------------------------------------------------- what TRL trains on


@pytest.mark.slow
def test_collated_labels_mask_the_prompt_and_end_with_eos(
    tmp_path, monkeypatch, ecqa_loaded, smol_model, smol_tokenizer
):
    """Build the trainer exactly as `train_sft` does (its `_run` is stubbed) and collate 4 real records."""
    built = {}
    monkeypatch.setattr(training, "_run", lambda trainer, s, tok, inputs: built.setdefault("trainer", trainer))
    records = ecqa_loaded[0]["train"].select(range(4))
    tok = smol_tokenizer
    trainer = training.train_sft(settings(tmp_path), records, model=smol_model(), tokenizer=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    assert trainer.model.peft_config["default"].r == settings(tmp_path).lora_r  # the settings' LoRA adapter is on
    for i, rec in enumerate(records):
        labels, ids = batch["labels"][i].tolist(), batch["input_ids"][i].tolist()
        n_prompt = len(tok(prompts.render_prompt(tok, rec), add_special_tokens=False)["input_ids"])
        assert ids[:n_prompt] == tok(prompts.render_prompt(tok, rec), add_special_tokens=False)["input_ids"]
        assert labels[:n_prompt] == [-100] * n_prompt, "the prompt must not be trained on"
        trained = [t for t in labels if t != -100]
        assert labels[n_prompt] != -100, "the completion starts right after the prompt"
        assert trained[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>"), (
            "the model must learn to stop"
        )
        assert trained.count(tok.eos_token_id) == 1
        text = tok.decode(trained)
        assert text.endswith(f"Answer: {rec['answer']}<|im_end|>")
        assert text == prompts.render_completion(tok, rec, prompts.target_text(rec["explanation"], rec["answer"]))
        assert all(t == -100 for t in labels[len(trained) + n_prompt :]), "padding is masked"


# ---------------------------------------------------------------- a short real SFT run


def answer_format(model, tok, records, max_new_tokens: int = 64) -> list[generation.Generation]:
    """Greedy generations for the records' prompts, in order."""
    prompt_texts = [prompts.render_prompt(tok, r) for r in records]
    out: list = [None] * len(prompt_texts)
    for idx, gens in generation.generate_all(model, tok, prompt_texts, batch_size=8, max_new_tokens=max_new_tokens):
        for i, g in zip(idx, gens):
            out[i] = g[0]
    return out


@pytest.mark.slow
def test_short_sft_learns_the_answer_format(tmp_path, ecqa_loaded, short_train, smol_model, smol_tokenizer):
    """32 real records, 24 steps of batch 4 at lr 5e-4: the loss falls, and the model goes from never ending
    with an ``Answer: X`` line to mostly doing so, then stopping. Measured: 135-148 s on 2 shared cores with
    1 thread, 85 s on 2 idle cores with MCQ_TEST_THREADS=2 (0/8 -> 8/8 answer lines, loss 3.4 -> 2.5)."""
    start = time.perf_counter()
    tok, held_out = smol_tokenizer, ecqa_loaded[0]["validation"].select(range(8))
    model = smol_model()
    before = answer_format(model, tok, held_out)
    s = settings(tmp_path, max_steps=24, learning_rate=5e-4)
    result = training.train_sft(s, short_train.select(range(32)), model=model, tokenizer=tok)

    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert len(losses) == 24
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, f"loss did not go down: {losses}"
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "settings.json",
        "metrics.json",
        "metrics.csv",
        "tokenizer.json",
    ):
        assert (s.output_dir / name).is_file(), name
    assert json.loads((s.output_dir / "metrics.json").read_text()) == result.log_history
    assert result.seconds > 0 and result.tokens_per_s > 0 and result.resumed_from is None

    trained = models.load_adapter_model(s.output_dir)  # as evaluation loads it
    after = answer_format(trained, tok, held_out)
    formatted = lambda gens: sum(bool(ANSWER_LINE_AT_END.search(g.text)) for g in gens)  # noqa: E731
    assert formatted(after) > formatted(before), ([g.text for g in before], [g.text for g in after])
    assert formatted(after) >= 6, [g.text for g in after]
    for g in after:
        m = ANSWER_LINE_AT_END.search(g.text)
        if m:
            assert extract_answer(g.text) == m.group(1)
            assert g.text[m.end() :] == "", "nothing may follow the answer line"
    stopped = sum(g.new_tokens < 64 for g in after)
    assert stopped >= 6, f"the model should stop at <|im_end|> after its answer ({stopped}/8 did)"
    print(
        f"short SFT: losses {losses[0]:.2f} -> {losses[-1]:.2f}; Answer-line outputs {formatted(before)}/8 -> "
        f"{formatted(after)}/8; {time.perf_counter() - start:.0f} s"
    )


# ---------------------------------------------------------------- resume


INPUTS = {"sft_adapter": "a1a1a1a1", "pairs": "b2b2b2b2", "pair_ids": "c3c3c3c3"}


def record_key(s, inputs) -> None:
    """What `training._run` records in the output folder before it trains."""
    s.output_dir.mkdir(parents=True, exist_ok=True)  # (a folder's provenance is provenance.json inside it)
    provenance.write(s.output_dir, {"resume_key": checkpoints.resume_key(s, inputs)})
    assert (s.output_dir / "provenance.json").is_file()


@pytest.mark.parametrize(
    "change",
    [
        {"beta": 0.2},
        {"learning_rate": 1e-4},
        {"nll_weight": 0.5},
        {"per_device_train_batch_size": 4},
        {"precision": "bf16"},
        {"quantize": False},
        {"seed": 1},
        {"train_sample_size": 100},
        {"holdout_size": 10},
        {"max_length": 256},
        {"model": "smollm2-135m"},
        {"inputs": {"sft_adapter": "ffffffff"}},
        {"inputs": {"pairs": "ffffffff"}},
        {"inputs": {"pair_ids": "ffffffff"}},
    ],
    ids=str,
)
def test_resume_under_a_changed_setting_or_input_is_refused_with_the_fix(tmp_path, change):
    """Every setting not marked resume_free, and the hashes of what the run trains from, key the checkpoints."""
    s = DPOSettings(root=str(tmp_path), precision="fp16", per_device_train_batch_size=8)
    record_key(s, INPUTS)
    checkpoints.check_resumable(s.output_dir, checkpoints.resume_key(s, INPUTS))  # the same: fine
    inputs = {**INPUTS, **change.pop("inputs", {})}
    name = next(iter(change), "inputs")
    with pytest.raises(
        ValueError,
        match=rf"holds checkpoints of a run with other settings or inputs \({name} .*"
        r"Put the old values back to resume, or delete the folder",
    ):
        checkpoints.check_resumable(s.output_dir, checkpoints.resume_key(s.replace(**change), inputs))


@pytest.mark.parametrize(
    "change",
    [
        {"logging_steps": 1},
        {"max_steps": 500},
        {"num_train_epochs": 3.0},
        {"save_steps": 7},
        {"save_total_limit": 5},
        {"report_to": "none"},
        {"save_merged": True},
        {"root": "/elsewhere"},
        {"data_source": "/local/ecqa"},
        {"offload_checkpoints": False},  # SFT only: where values wait, not what is learned
        {"liger_kernels": False},  # SFT only: the same computation in other kernels
    ],
    ids=str,
)
def test_resume_free_settings_may_change_on_a_resume(tmp_path, change):
    cls = SFTSettings if change.keys() & {"offload_checkpoints", "liger_kernels"} else DPOSettings
    s = cls(root=str(tmp_path))
    record_key(s, INPUTS)
    checkpoints.check_resumable(s.output_dir, checkpoints.resume_key(s.replace(**change), INPUTS))


def test_checkpoints_without_provenance_are_refused(tmp_path):
    s = SFTSettings(root=str(tmp_path))
    s.output_dir.mkdir(parents=True)
    with pytest.raises(ValueError, match="no provenance.json: an older version wrote them"):
        checkpoints.check_resumable(s.output_dir, checkpoints.resume_key(s, {}))


class FakeTrainer:
    """What `training._run` uses of a TRL trainer; ``train`` moves to ``end_step`` having seen ``end_tokens``."""

    def __init__(self, end_step: int, end_tokens: int, seconds: float = 0.05) -> None:
        self.end_step, self.end_tokens, self.seconds, self.trained = end_step, end_tokens, seconds, False
        self.model = torch.nn.Module()
        self.args = SimpleNamespace(fp16=False, world_size=1)
        self.state = SimpleNamespace(global_step=0, log_history=[])
        self.accelerator = SimpleNamespace(wait_for_everyone=lambda: None)

    def is_world_process_zero(self) -> bool:
        return True

    def train(self, resume_from_checkpoint=None):
        self.trained = True
        cuda = torch.backends.cuda
        self.attention = dict(  # the SDPA backends PyTorch may choose from while training
            cudnn=cuda.cudnn_sdp_enabled(),
            flash=cuda.flash_sdp_enabled(),
            efficient=cuda.mem_efficient_sdp_enabled(),
            math=cuda.math_sdp_enabled(),
        )
        start = int(resume_from_checkpoint.rsplit("-", 1)[1]) if resume_from_checkpoint else 0
        if resume_from_checkpoint:  # save_total_limit deletes older checkpoints as new ones are written
            shutil.rmtree(resume_from_checkpoint)
        time.sleep(self.seconds)
        # as transformers 5.17 does: resumed at the last step, it still trains one more
        self.state.global_step = max(self.end_step, start + 1)
        self.state.log_history = [
            {"step": k, "loss": 1.0, "num_input_tokens_seen": self.end_tokens * k // self.end_step}
            for k in range(1, self.state.global_step + 1)
        ]

    def save_model(self, path: str) -> None:
        Path(path, "adapter_model.safetensors").write_bytes(b"weights")


class FakeTokenizer:
    def save_pretrained(self, path: str) -> None:
        Path(path, "tokenizer.json").write_text("{}")


def checkpoint_with_tokens(out: Path, step: int, tokens: int, max_steps: int = 6) -> Path:
    state = {"global_step": step, "max_steps": max_steps, "num_input_tokens_seen": tokens}
    return fake_checkpoint(out, step, state=json.dumps(state))


def test_tokens_per_s_after_a_resume_counts_only_tokens_trained_after_it(tmp_path):
    s = SFTSettings(root=str(tmp_path), max_steps=6, report_to="none")
    record_key(s, {"train_ids": "x"})
    checkpoint_with_tokens(s.output_dir, 4, tokens=4_000)
    result = training._run(FakeTrainer(end_step=6, end_tokens=6_000), s, FakeTokenizer(), {"train_ids": "x"})
    assert result.resumed_from == str(s.output_dir / "checkpoint-4")
    assert result.tokens_per_s * result.seconds == pytest.approx(2_000), "tokens seen before the resume were counted"
    summary = json.loads((s.output_dir / "train_summary.json").read_text())
    assert (
        summary["tokens_per_s"] == pytest.approx(result.tokens_per_s)
        and summary["resumed_from"] == result.resumed_from
    )


def test_training_leaves_cudnn_attention_out_and_only_while_it_trains(tmp_path):
    s = SFTSettings(root=str(tmp_path), max_steps=6, report_to="none")
    trainer = FakeTrainer(end_step=6, end_tokens=6_000)
    assert torch.backends.cuda.cudnn_sdp_enabled()  # PyTorch's default, which Hopper cards pick first
    training._run(trainer, s, FakeTokenizer(), {})
    assert trainer.attention == dict(cudnn=False, flash=True, efficient=True, math=True)
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored for evaluation and whatever runs next


class OptimManager:
    """bitsandbytes' ``GlobalOptimManager`` as far as transformers' Trainer uses it (bitsandbytes 0.50.2): a
    process-wide singleton whose ``register_module_override`` appends (module, name, config) to a list."""

    _instance = None

    @classmethod
    def get_instance(cls):
        if cls._instance is None:
            cls._instance = cls.__new__(cls)
            cls._instance.module_weight_config_triple = []
        return cls._instance

    def register_module_override(self, module, param_name, config):
        self.module_weight_config_triple.append((module, param_name, config))


class EightBitOptimizerTrainer(FakeTrainer):
    """As transformers' Trainer does when it makes an 8-bit bitsandbytes optimizer: every embedding is registered."""

    def __init__(self, interrupt: bool) -> None:
        super().__init__(end_step=2, end_tokens=200, seconds=0.0)
        self.model, self.interrupt = torch.nn.Sequential(torch.nn.Embedding(64, 8), torch.nn.Linear(8, 8)), interrupt

    def train(self, resume_from_checkpoint=None):
        manager = sys.modules["bitsandbytes"].optim.GlobalOptimManager.get_instance()
        for module in self.model.modules():
            if isinstance(module, torch.nn.Embedding):
                manager.register_module_override(module, "weight", {"optim_bits": 32})
        if self.interrupt:
            raise KeyboardInterrupt  # a notebook cell stopped by hand, then run again
        super().train(resume_from_checkpoint)


@pytest.mark.parametrize("interrupt", [False, True], ids=["finished", "interrupted"])
def test_a_trained_model_can_be_freed_though_an_8bit_optimizer_registered_its_embedding(
    tmp_path, monkeypatch, interrupt
):
    """Found on an H100 (2026-12-05): every training kept its input embedding alive in bitsandbytes' manager."""
    bnb = ModuleType("bitsandbytes")
    bnb.optim = SimpleNamespace(GlobalOptimManager=OptimManager)
    monkeypatch.setitem(sys.modules, "bitsandbytes", bnb)
    monkeypatch.setattr(OptimManager, "_instance", None)  # a fresh process's manager
    other = torch.nn.Embedding(4, 4)  # a module of someone else's training keeps its registration
    OptimManager.get_instance().register_module_override(other, "weight", {"optim_bits": 32})
    trainer = EightBitOptimizerTrainer(interrupt)
    alive = weakref.ref(trainer.model[0])
    s = SFTSettings(root=str(tmp_path), max_steps=2, report_to="none")
    if interrupt:
        with pytest.raises(KeyboardInterrupt):
            training._run(trainer, s, FakeTokenizer(), {})
    else:
        training._run(trainer, s, FakeTokenizer(), {})
    assert [t[0] for t in OptimManager.get_instance().module_weight_config_triple] == [other]
    del trainer
    gc.collect()
    assert alive() is None, "the trained model's embedding outlived its trainer"


def test_rerunning_a_finished_run_keeps_its_summary(tmp_path, capsys):
    """Found by the real resume test: transformers resumed at the last step trains one more, so the run is judged
    finished before `train` (its last checkpoint reached the max_steps it planned, and the length asked is the
    same)."""
    s = SFTSettings(root=str(tmp_path), max_steps=6, report_to="none")
    record_key(s, {})
    s.to_json(s.output_dir / "settings.json")
    checkpoint_with_tokens(s.output_dir, 6, tokens=6_000)
    summary = s.output_dir / "train_summary.json"
    summary.write_text(json.dumps({"seconds": 30.0, "tokens_per_s": 200.0, "peak_gib": 1.5, "resumed_from": None}))
    before = (summary.read_bytes(), summary.stat().st_mtime_ns)
    trainer = FakeTrainer(end_step=6, end_tokens=6_000)
    result = training._run(trainer, s.replace(logging_steps=1), FakeTokenizer(), {})
    assert not trainer.trained, "a finished run was trained again"
    assert (summary.read_bytes(), summary.stat().st_mtime_ns) == before, "a finished run's summary was overwritten"
    assert (result.seconds, result.tokens_per_s, result.peak_gib) == (30.0, 200.0, 1.5)
    assert "already finished at step 6: nothing to train" in capsys.readouterr().out
    assert not (s.output_dir / "adapter_model.safetensors").exists(), "the finished run's artifacts were rewritten"
    assert SFTSettings.from_json(s.output_dir / "settings.json") == s, "its settings.json was rewritten"

    # asked for more steps (max_steps may change on a resume): it trains on from the last checkpoint
    longer = training._run(FakeTrainer(end_step=8, end_tokens=8_000), s.replace(max_steps=8), FakeTokenizer(), {})
    assert longer.resumed_from == str(s.output_dir / "checkpoint-6") and summary.read_bytes() != before[0]
    assert longer.tokens_per_s * longer.seconds == pytest.approx(2_000)


def test_a_refused_resume_trains_nothing_and_writes_nothing(tmp_path):
    s = SFTSettings(root=str(tmp_path), max_steps=6, report_to="none")
    record_key(s, {})
    checkpoint_with_tokens(s.output_dir, 4, tokens=4_000)
    trainer = FakeTrainer(end_step=6, end_tokens=6_000)
    with pytest.raises(ValueError, match="learning_rate 0.0002 -> 0.001"):
        training._run(trainer, s.replace(learning_rate=1e-3), FakeTokenizer(), {})
    assert not trainer.trained and not (s.output_dir / "settings.json").exists()
    assert checkpoints.resume_key(s, {}) == provenance.read(s.output_dir)["resume_key"]


@pytest.mark.slow
def test_second_run_resumes_from_the_last_checkpoint(tmp_path, short_train, smol_model, smol_tokenizer, capsys):
    records = short_train.select(range(8))
    s = settings(tmp_path, per_device_train_batch_size=2, max_steps=4, save_steps=2)
    first = training.train_sft(s, records, model=smol_model(), tokenizer=smol_tokenizer)
    assert first.resumed_from is None
    assert sorted(p.name for p in s.output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]

    second = training.train_sft(s.replace(max_steps=6), records, model=smol_model(), tokenizer=smol_tokenizer)
    assert second.resumed_from == str(s.output_dir / "checkpoint-4")
    assert f"resuming from {s.output_dir / 'checkpoint-4'}" in capsys.readouterr().out
    state = json.loads((s.output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [h["step"] for h in second.log_history if "loss" in h]
    assert steps[-1] == 6 and 5 in steps  # steps 1-4 come from the first run's state, 5-6 are new
    tokens = {
        k: json.loads((s.output_dir / f"checkpoint-{k}" / "trainer_state.json").read_text())["num_input_tokens_seen"]
        for k in (4, 6)
    }
    assert second.tokens_per_s * second.seconds == pytest.approx(tokens[6] - tokens[4]), "counted tokens before resume"
    summary = (s.output_dir / "train_summary.json").read_bytes()
    third = training.train_sft(s.replace(max_steps=6), records, model=smol_model(), tokenizer=smol_tokenizer)
    assert (s.output_dir / "train_summary.json").read_bytes() == summary, (
        "rerunning a finished run rewrote its summary"
    )
    assert third.tokens_per_s == second.tokens_per_s

    # a half-written newest checkpoint is skipped, with a message
    (s.output_dir / "checkpoint-6" / "optimizer.pt").unlink()
    assert checkpoints.last_valid_checkpoint(s.output_dir) == str(s.output_dir / "checkpoint-4")
    assert "skipping incomplete checkpoint" in capsys.readouterr().out
    (s.output_dir / "checkpoint-4" / "trainer_state.json").write_text("{not json")
    assert checkpoints.last_valid_checkpoint(s.output_dir) is None


# ---------------------------------------------------------------- wandb, offline


@pytest.mark.slow
def test_wandb_offline_run_is_written(tmp_path, monkeypatch, short_train, smol_model, smol_tokenizer):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    s = settings(tmp_path / "artifacts", per_device_train_batch_size=2, max_steps=2, report_to="wandb")
    try:
        training.train_sft(s, short_train.select(range(4)), model=smol_model(), tokenizer=smol_tokenizer)
    finally:
        wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(tmp_path.rglob("*"))[:20]
    assert list(runs[0].glob("*.wandb")), "the offline run holds its log file"
    shutil.rmtree(tmp_path / "wandb", ignore_errors=True)


@pytest.mark.parametrize(
    ("cuda", "offload", "expected"),
    [
        (True, True, {"use_reentrant": False, "offload": True}),
        (True, False, {"use_reentrant": False}),
        (False, True, {"use_reentrant": False}),  # without a GPU the activations are in host memory already
    ],
)
def test_checkpointed_layers_keep_their_inputs_in_host_memory_on_a_gpu(monkeypatch, tmp_path, cuda, offload, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    s = SFTSettings(root=str(tmp_path), offload_checkpoints=offload)
    assert training.checkpointing_kwargs(s) == expected
    assert training.ddp_args(s)["gradient_checkpointing_kwargs"] == expected
    assert "gradient_checkpointing_kwargs" not in training.ddp_args(s.replace(gradient_checkpointing=False))
    assert training.checkpointing_kwargs(DPOSettings(root=str(tmp_path))) == {"use_reentrant": False}  # TRL drops it


def test_an_older_transformers_trains_with_its_checkpoints_on_the_gpu_instead_of_failing(monkeypatch, tmp_path):
    assert training._transformers_offloads()  # the pinned version
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from transformers import PreTrainedModel

    def older(self, gradient_checkpointing_kwargs=None):  # transformers 5.15's signature
        pass

    monkeypatch.setattr(PreTrainedModel, "gradient_checkpointing_enable", older)
    assert training.checkpointing_kwargs(SFTSettings(root=str(tmp_path))) == {"use_reentrant": False}


def test_offloaded_checkpoints_give_the_same_loss_and_lora_gradients(monkeypatch):
    """transformers' ``offload`` (the pinned version has it) moves saved values, it does not change them.

    On a CPU there is no pinned memory: the test unpins transformers' ``save_on_cpu`` and counts what it saves.
    """
    import transformers.modeling_utils as mu
    from peft import get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    saved: list[torch.Size] = []

    class Unpinned(torch.autograd.graph.save_on_cpu):
        def __init__(self, pin_memory: bool = False, device_type: str = "cuda") -> None:
            super().__init__(pin_memory=False, device_type=device_type)
            pack = self.pack_hook
            self.pack_hook = lambda t: (saved.append(t.shape), pack(t))[1]

    monkeypatch.setattr(mu, "save_on_cpu", Unpinned)

    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, vocab_size=256)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    results = []
    for offload in (False, True):
        torch.manual_seed(0)
        base = LlamaForCausalLM(LlamaConfig(**shape))
        model = get_peft_model(base, training.lora_config(SFTSettings(lora_r=8, lora_alpha=16, lora_dropout=0.0)))
        model.train()
        kwargs = training.checkpointing_kwargs(SFTSettings())
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs, offload=offload)
        assert all(layer.gradient_checkpointing for layer in base.model.layers)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert sum(shape == (2, 24, 64) for shape in saved) >= 3  # each layer's input went through save_on_cpu
    assert loss_a == loss_b and grads_a.keys() == grads_b.keys() and len(grads_a) == 3 * 7 * 2
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_sft_on_a_gpu_uses_liger_layer_kernels_and_trl_keeps_its_fused_lm_head(monkeypatch, tmp_path, caplog):
    s = SFTSettings(root=str(tmp_path))
    assert training.liger_args(s) == {}  # no GPU here: Triton needs one
    assert training.sft_config(s).use_liger_kernel is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        training.importlib.util, "find_spec", lambda name: object() if name == "liger_kernel" else None
    )
    kernels = {"rope": True, "rms_norm": True, "swiglu": True, "fused_linear_cross_entropy": False}
    assert training.liger_args(s) == {"use_liger_kernel": True, "liger_kernel_config": kernels}
    assert training.liger_args(s.replace(liger_kernels=False)) == {}
    monkeypatch.setattr(training.importlib.util, "find_spec", lambda name: None)  # a GPU without liger-kernel
    assert training.liger_args(s) == {} and "liger-kernel is not installed" in caplog.text

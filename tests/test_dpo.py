"""A short real DPO run on SmolLM2 (CPU): from an SFT adapter, on real offline pairs, the implicit
reward accuracy and margin rise above their starting values; the settings guard the base model."""

from __future__ import annotations

import pytest
from datasets import Dataset

from helpers import pairs, training
from helpers.settings import DPOSettings, SFTSettings

SMOL = "smollm2-135m"
CPU = dict(gradient_checkpointing=False, logging_steps=1, save_steps=1000, warmup_ratio=0.0, report_to="none")


pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def sft_root(tmp_path_factory, ecqa_loaded, smol_tokenizer):
    """A root with a (barely) trained SFT adapter in outputs/sft."""
    root = tmp_path_factory.mktemp("dpo")
    s = SFTSettings(
        model=SMOL,
        root=str(root),
        max_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        max_length=320,
        **CPU,
    )
    training.train_sft(s, ecqa_loaded[0]["train"].select(range(8)), tokenizer=smol_tokenizer)
    return root


@pytest.mark.slow
def test_short_dpo_raises_reward_accuracy_and_margin(sft_root, ecqa_loaded, smol_tokenizer):
    records = ecqa_loaded[0]["train"].select(range(100, 106))
    pair_ds = Dataset.from_list(pairs.build_offline_pairs(smol_tokenizer, records, seed=0))
    s = DPOSettings(
        model=SMOL,
        root=str(sft_root),
        variant="dpo-test",
        learning_rate=5e-4,
        beta=0.1,
        max_steps=12,
        num_train_epochs=4,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        max_length=448,
        **CPU,
    )
    result = training.train_dpo(s, pair_ds, tokenizer=smol_tokenizer)
    logs = [h for h in result.log_history if "rewards/margins" in h]
    assert len(logs) == 12
    # at step 1 the policy is its reference (the frozen SFT copy): margin 0, accuracy 0, loss log 2
    assert logs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)
    assert logs[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    last = logs[-4:]  # the last two passes over the six pairs
    assert sum(h["rewards/margins"] for h in last) / len(last) > logs[0]["rewards/margins"] + 0.05
    assert sum(h["rewards/accuracies"] for h in last) / len(last) > logs[0]["rewards/accuracies"] + 0.5
    assert (result.output_dir / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_dpo_refuses_an_adapter_of_another_base(sft_root, smol_tokenizer):
    s = DPOSettings(model="llama-3.2-1b", root=str(sft_root), max_steps=1, **CPU)
    with pytest.raises(ValueError, match="trained on 'smollm2-135m'"):
        training.train_dpo(
            s, Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}]), tokenizer=smol_tokenizer
        )

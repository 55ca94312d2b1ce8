"""Tests for helpers.models: presets, the CPU load of SmolLM2, precision choice, and the errors users meet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import models
from helpers.models import GATED_HELP, PRESETS, compute_dtype, resolve

# ---------------------------------------------------------------- presets


def test_presets_resolve():
    assert resolve("llama-3.2-1b") == ("meta-llama/Llama-3.2-1B-Instruct", PRESETS["llama-3.2-1b"])
    assert PRESETS["llama-3.2-1b"].gated and not PRESETS["llama-3.2-1b-ungated"].gated
    assert resolve("llama-3.2-1b-ungated")[0] == "unsloth/Llama-3.2-1B-Instruct"
    # a preset's Hub id finds the preset, so its end-of-turn and pad tokens still apply
    assert resolve("unsloth/Llama-3.2-1B-Instruct")[1] is PRESETS["llama-3.2-1b-ungated"]
    for name in ("llama-3.2-1b", "llama-3.2-1b-ungated"):
        assert (PRESETS[name].end_of_turn, PRESETS[name].pad_token) == ("<|eot_id|>", "<|finetune_right_pad_id|>")
    # any other Hub id passes through without a preset
    assert resolve("someone/some-model") == ("someone/some-model", None)


def test_embedded_preset_resolves_to_a_model_folder():
    folder, preset = resolve("smollm2-135m")
    assert preset is PRESETS["smollm2-135m"]
    assert (Path(folder) / "config.json").is_file() and (Path(folder) / "model.safetensors").is_file()


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no config.json: is it a model folder"):
        resolve(str(tmp_path))


# ---------------------------------------------------------------- SmolLM2 on CPU


@pytest.mark.slow
def test_cpu_load_of_smollm2(smol_model, smol_tokenizer):
    model, tok = smol_model(), smol_tokenizer
    assert model.dtype == torch.float32
    assert model.device.type == "cpu"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    eos = model.generation_config.eos_token_id
    assert tok.eos_token_id in (eos if isinstance(eos, list) else [eos])  # generation stops at the end of turn
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.config.pad_token_id == tok.pad_token_id


# ---------------------------------------------------------------- precision


@pytest.fixture
def gpu(monkeypatch):
    """Pretend a CUDA GPU of a given compute capability is present; bf16 'supported' as on a T4."""

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (major, minor))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return set_capability


def test_compute_dtype_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute_dtype("auto") == torch.float32


def test_compute_dtype_t4_is_fp16_although_bf16_is_reported(gpu):
    gpu(7, 5)
    assert torch.cuda.is_bf16_supported()  # what a T4 says (emulated bf16)
    assert compute_dtype("auto") == torch.float16


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (9, 0)])
def test_compute_dtype_ampere_and_newer_is_bf16(gpu, capability):
    gpu(*capability)
    assert compute_dtype("auto") == torch.bfloat16


@pytest.mark.parametrize("forced, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_compute_dtype_forced(gpu, forced, dtype):
    gpu(9, 0)
    assert compute_dtype(forced) == dtype


# ---------------------------------------------------------------- Hub errors and the token


@pytest.mark.parametrize(
    "text",
    [
        "You are trying to access a gated repo.",
        "401 Client Error: Unauthorized for url",
        "403 Forbidden: Access to model meta-llama/Llama-3.2-1B-Instruct is restricted",
        "Your request to access this repo is awaiting a review",
    ],
)
def test_gated_error_says_what_to_do(text):
    err = models._hub_errors("meta-llama/Llama-3.2-1B-Instruct", OSError(text))
    assert isinstance(err, PermissionError)
    msg = str(err)
    assert "https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct" in msg  # the license page
    assert "HF_TOKEN" in msg
    assert "llama-3.2-1b-ungated" in msg and "llama-3.2-1b-ungated" in PRESETS


def test_other_hub_errors_pass_through():
    original = OSError("someone/typo is not a local folder and is not a valid model identifier")
    assert models._hub_errors("someone/typo", original) is original


def test_hf_token_reads_env_and_is_never_printed(monkeypatch, capsys):
    secret = "hf_do_not_print_me_123"
    monkeypatch.setenv("HF_TOKEN", secret)
    assert models.hf_token() == secret
    assert secret not in GATED_HELP.format(model="meta-llama/Llama-3.2-1B-Instruct")
    assert secret not in str(models._hub_errors("meta-llama/Llama-3.2-1B-Instruct", OSError("gated")))
    out = capsys.readouterr()
    assert secret not in out.out + out.err


def test_hf_token_absent(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert models.hf_token() is None  # off Colab there is no secret store


# ---------------------------------------------------------------- adapter folders


def test_adapter_base_needs_an_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no adapter in \S+: train that step first or fix the path"):
        models.adapter_base(tmp_path)


def test_one_adapter_present_check(tmp_path):
    assert not models.has_adapter(tmp_path) and not models.has_adapter(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"no adapter in \S+: run 03_sft first"):
        models.require_adapter(tmp_path, "run 03_sft first")
    (tmp_path / "adapter_config.json").write_text("{}")
    assert models.has_adapter(tmp_path) and models.require_adapter(tmp_path, "unused") == tmp_path


@pytest.mark.parametrize(
    "configured, end_of_turn, expected",
    [
        ([128001, 128008, 128009], 128009, [128001, 128008, 128009]),  # Llama-3.2: its list is kept, not replaced
        ([128001, 128008], 128009, [128001, 128008, 128009]),
        (2, 7, [2, 7]),
        (7, 7, 7),
        (None, 7, [7]),
    ],
)
def test_eos_ids_keep_the_models_list(configured, end_of_turn, expected):
    assert models.eos_ids(configured, end_of_turn) == expected


def test_adapter_provenance_says_whether_it_was_trained_quantized(tmp_path):
    from helpers import provenance

    assert models.trained_quantized(tmp_path) is False  # no provenance: an older adapter, taken as unquantized
    provenance.write(tmp_path, {"quantized": True})
    assert models.trained_quantized(tmp_path) is True


def test_adapter_base_prefers_saved_settings(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/some/cache/folder"}))
    assert models.adapter_base(tmp_path) == "/some/cache/folder"
    (tmp_path / "settings.json").write_text(json.dumps({"model": "smollm2-135m"}))
    assert models.adapter_base(tmp_path) == "smollm2-135m"


@pytest.mark.parametrize("cuda", [True, False])
def test_auto_quantize_is_4bit_on_cuda_except_for_the_embedded_135m_model(monkeypatch, cuda):
    """quantize=None means 4-bit NF4 on a GPU for Llama-3.2-1B (presets, Hub ids, local folders), never for the
    embedded SmolLM2, whose weights are a dequantized 4-bit GGUF already; an explicit True/False always wins."""
    monkeypatch.setattr(models.torch.cuda, "is_available", lambda: cuda)
    for name in ("llama-3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", "some/other-model"):
        assert models.wants_4bit(name, None) is cuda
    assert models.wants_4bit("smollm2-135m", None) is False
    assert models.wants_4bit("smollm2-135m", True) is True and models.wants_4bit("llama-3.2-1b", False) is False

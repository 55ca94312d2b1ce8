"""A QLoRA adapter is evaluated, sampled from and merged consistently with the base it was trained on.

An adapter trained on the 4-bit NF4 copy of a base learned to correct *those* weights. Merged into the
original full-precision weights (the old evaluation path) every layer is off by the NF4 rounding error; merged
into the 4-bit base dequantized (`models.base_for_merge`) it computes what training computed. Real SmolLM2 on
CPU (bitsandbytes' CPU backend), an adapter with random non-zero weights standing in for a trained one.

Run by tests/test_qlora_merge.py in a subprocess with bitsandbytes on its path: installed in the main test
environment, bitsandbytes' import prints a warning on CPU that every notebook would show as a stderr box.
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers import models, provenance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_threads")]
pytest.importorskip("bitsandbytes", reason="the 4-bit base needs bitsandbytes (tests/test_qlora_merge.py adds it)")


@pytest.fixture(scope="module")
def qlora_adapter(tmp_path_factory):
    """A LoRA adapter on the 4-bit SmolLM2, saved as a QLoRA SFT run saves it (settings.json, provenance.json)."""
    from peft import LoraConfig, get_peft_model

    folder = tmp_path_factory.mktemp("qlora") / "sft"
    base = models.load_model("smollm2-135m", quantize=True)
    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=2, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(folder)
    (folder / "settings.json").write_text(json.dumps({"model": "smollm2-135m"}))
    provenance.write(folder, {"quantized": True})
    return folder


def _logits(model, tok) -> torch.Tensor:
    ids = tok("Question: Where do fish live?\nAnswer: in the sea", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0].float()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_merged_qlora_adapter_computes_what_training_computed(qlora_adapter):
    tok = models.load_tokenizer("smollm2-135m")
    as_trained = _logits(models.load_adapter_model(qlora_adapter, quantize=True), tok)  # 4-bit base + LoRA beside it
    merged = _logits(models.load_adapter_model(qlora_adapter, quantize=False), tok)  # into the dequantized 4-bit base
    provenance.write(qlora_adapter, {"quantized": False})  # the old path: merged into the original weights
    try:
        merged_original = _logits(models.load_adapter_model(qlora_adapter, quantize=False), tok)
    finally:
        provenance.write(qlora_adapter, {"quantized": True})
    # the floor: bitsandbytes' 4-bit forward against the same weights dequantized, no adapter (~1% on CPU)
    kernel = _rel(
        _logits(models.base_for_merge(qlora_adapter), tok),
        _logits(models.load_model("smollm2-135m", quantize=True), tok),
    )
    err_dequantized, err_original = _rel(merged, as_trained), _rel(merged_original, as_trained)
    print(
        f"relative logit error vs as trained: merged into the dequantized base {err_dequantized:.2e}, into the "
        f"original weights {err_original:.2e}; the 4-bit kernel alone {kernel:.2e}"
    )
    assert err_dequantized < 1.5 * kernel + 1e-4, (err_dequantized, kernel)  # the merge adds nothing of its own
    assert err_original > 10 * err_dequantized, (err_original, err_dequantized)

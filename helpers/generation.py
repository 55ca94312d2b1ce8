"""Batched generation for evaluation and on-policy sampling.

Two engines, one interface (`generate_all`), results in the input order:

* ``continuous`` (the default on a GPU): transformers' continuous batching (``continuous_batching_context_manager``,
  the engine behind ``generate_batch``). A finished sequence frees its slot at once and the next prompt takes it, so a
  batch is never held by its longest answer; the k samples of one prompt share its prefill (prefix sharing); the KV
  cache is paged and sized from the GPU's free memory, so how many sequences decode together is chosen from memory,
  not fixed. CUDA graphs are transformers' choice (off with SDPA's paged attention) unless ``cuda_graphs`` is set.
* ``generate`` (the default on CPU, and for a 4-bit model): ``model.generate`` on length-sorted, left-padded batches
  of ``batch_size`` prompts, each row generated until eos or ``max_new_tokens``; on a GPU with transformers' static
  cache.

benchmarks/generation_1b.py measures both at Llama-3.2-1B shape against the card's bound (benchmarks/NOTES.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

ENGINES = ("auto", "continuous", "generate")
# `generate` options of the `generate` engine on a GPU; callers may override them
GPU_GENERATE_OPTIONS: dict[str, Any] = {"cache_implementation": "static", "disable_compile": True}
CHILD = "__child#"  # how continuous batching names the extra samples of a request (``req_3__child#0``)


@dataclass
class Generation:
    """One generated continuation: decoded text (special tokens dropped) and its token count."""

    text: str
    new_tokens: int


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length, longest first (OOM shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def is_4bit(model: Any) -> bool:
    """Whether any layer of ``model`` holds 4-bit weights (bitsandbytes' ``Linear4bit``): read from the modules, since
    a model dequantized after loading (`helpers.models.base_for_merge`) keeps transformers' loading flags."""
    modules = getattr(model, "modules", None)
    if modules is None:  # not a torch module: its flag is all there is to read
        return bool(getattr(model, "is_loaded_in_4bit", False))
    return any(type(m).__name__ == "Linear4bit" for m in modules())


def pick_engine(model: Any, engine: str = "auto") -> str:
    """``auto``: continuous batching on a GPU for a full-precision model, else ``generate``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    return "continuous" if model.device.type == "cuda" and not is_4bit(model) else "generate"


def _decode(tokenizer: Any, ids: Any, eos: set[int]) -> Generation:
    """Text and token count up to and including the first eos (all tokens if none)."""
    ids = [int(t) for t in ids]
    n = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    text = tokenizer.decode(ids[:n], skip_special_tokens=True, clean_up_tokenization_spaces=False)  # BPE: no cleanup
    return Generation(text.strip(), n)


def sampling(temperature: float) -> dict[str, Any]:
    """`generate` options: greedy at temperature 0, else plain sampling from the whole distribution (no top-k/p)."""
    sample = temperature > 0
    return {
        "do_sample": sample,
        "temperature": temperature if sample else None,
        "top_p": 1.0 if sample else None,
        "top_k": 0 if sample else None,
    }


def _eos_set(model: Any, tokenizer: Any) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = {configured} if isinstance(configured, int) else set(configured or [])
    return ids | {tokenizer.eos_token_id}


@torch.inference_mode()
def generate_batch(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 192,
    temperature: float = 0.0,
    num_return_sequences: int = 1,
    **generate_kwargs: Any,
) -> list[list[Generation]]:
    """The ``generate`` engine on one batch of rendered prompts; greedy when ``temperature`` is 0.

    Returns, per prompt, ``num_return_sequences`` generations. ``generate_kwargs`` go to
    ``model.generate`` as they are (e.g. ``cache_implementation="static"``).
    """
    model.eval()
    if model.device.type == "cuda":
        generate_kwargs = {**GPU_GENERATE_OPTIONS, **generate_kwargs}
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        **sampling(temperature),
        num_return_sequences=num_return_sequences,
        eos_token_id=sorted(_eos_set(model, tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
        **generate_kwargs,
    )
    eos = _eos_set(model, tokenizer)
    gens = [_decode(tokenizer, row, eos) for row in out[:, enc["input_ids"].shape[1] :].tolist()]
    k = num_return_sequences
    return [gens[i * k : (i + 1) * k] for i in range(len(prompts))]


MEMORY_CAP_ENV = "MCQ_GPU_MEMORY_GIB"  # a cap on this process's GPU memory that continuous batching must respect


def continuous_config(
    seed: int | None = None,
    max_sequences: int | None = None,
    cpu_tokens: int | None = None,
    cuda_graphs: bool | None = None,
) -> Any:
    """Continuous batching's settings: at most ``max_sequences`` decoding at once; the KV cache sized from free GPU
    memory (within ``$MCQ_GPU_MEMORY_GIB`` when set: transformers reads the card's free memory, which a per-process
    cap does not change), or on CPU (``cpu_tokens``: the workload's tokens) to the workload, not to the machine's RAM.
    ``cuda_graphs`` None leaves transformers' choice (off with SDPA's paged attention, which needs a mask)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    blocks = None if cpu_tokens is None else math.ceil(cpu_tokens / ContinuousBatchingConfig.block_size) + 1
    share = None
    cap = os.environ.get(MEMORY_CAP_ENV)
    if cap and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        room = float(cap) * 2**30 - torch.cuda.memory_reserved()
        share = min(0.9, max(0.01, 0.8 * room / free))
    return ContinuousBatchingConfig(
        seed=seed,
        max_requests_per_batch=max_sequences,
        num_blocks=blocks,
        max_memory_percent=share,
        use_cuda_graph=cuda_graphs,
    )


def generate_continuous(  # no inference_mode here: the manager's thread updates its cache in place
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    group_size: int = 32,
    max_new_tokens: int = 192,
    temperature: float = 0.0,
    num_return_sequences: int = 1,
    seed: int | None = None,
    max_sequences: int | None = None,
    ignore_eos: bool = False,
    cuda_graphs: bool | None = None,
) -> Iterator[tuple[list[int], list[list[Generation]]]]:
    """The ``continuous`` engine: yield ``(indices, generations)`` as prompts finish, ``group_size`` prompts at a time.

    Every prompt's ``num_return_sequences`` samples come back together; ``ignore_eos`` forces every sequence to
    ``max_new_tokens`` (benchmarks on random weights).
    """
    from transformers import GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    model.eval()
    k = num_return_sequences
    eos = _eos_set(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        **sampling(temperature),
        num_return_sequences=k,
        eos_token_id=-1 if ignore_eos else sorted(eos),
        pad_token_id=tokenizer.pad_token_id,
    )
    if not prompts:  # nothing left (a resumed run): no manager, no cache
        return
    inputs = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    hints = WorkloadHints(max(map(len, inputs), default=0), max_new_tokens, len(inputs) * k)
    cpu_tokens = None if model.device.type == "cuda" else sum(len(i) + max_new_tokens for i in inputs) * k
    stops = set() if ignore_eos else eos

    def decode(ids: Any) -> Generation:
        return _decode(tokenizer, ids, stops)

    with model.continuous_batching_context_manager(
        generation_config=config,
        continuous_batching_config=continuous_config(seed, max_sequences, cpu_tokens, cuda_graphs),
        workload_hints=hints,
        block=True,
        timeout=5,
    ) as manager:
        try:
            yield from _collect(
                manager, manager.add_requests(inputs=inputs, max_new_tokens=max_new_tokens), k, group_size, decode
            )
        except BaseException:  # an error, a failed request or an interrupt: stop the thread now, before the teardown
            manager.stop(block=True, hard_stop=True)
            raise


def _collect(
    manager: Any, ids: list[str], k: int, group_size: int, decode: Any
) -> Iterator[tuple[list[int], list[list[Generation]]]]:
    """Finished requests grouped by prompt (its k samples together), ``group_size`` prompts at a time."""
    index = {rid: i for i, rid in enumerate(ids)}
    samples: dict[int, dict[int, Generation]] = {}
    ready: list[int] = []
    left = len(ids)
    while left:
        result = manager.get_result(timeout=1)
        if result is None:
            if not manager.is_running():
                error = getattr(manager.background_thread_status, "fatal_error", None)
                raise RuntimeError(f"continuous batching stopped before every prompt finished: {error}")
            continue
        if not result.is_finished():
            continue
        if result.error is not None:
            raise RuntimeError(f"generation failed for prompt {result.request_id}: {result.error}")
        parent, _, child = result.request_id.partition(CHILD)
        i = index[parent]
        samples.setdefault(i, {})[int(child) + 1 if child else 0] = decode(result.generated_tokens)
        if len(samples[i]) == k:
            ready.append(i)
            left -= 1
        if len(ready) >= group_size or (ready and not left):
            yield ready, [[done[s] for s in range(k)] for done in map(samples.pop, ready)]
            ready = []


def generate_all(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int = 32,
    engine: str = "auto",
    seed: int | None = None,
    max_sequences: int | None = None,
    **kwargs: Any,
) -> Iterator[tuple[list[int], list[list[Generation]]]]:
    """Yield ``(indices, generations)`` per group of ``batch_size`` prompts, so callers can save as they go.

    ``engine`` (`pick_engine`): ``continuous`` decodes as many sequences together as memory holds (at most
    ``max_sequences`` when given) and yields prompts as they finish; ``generate`` decodes ``batch_size`` prompts a
    batch, length-sorted. ``seed`` seeds sampling (each engine its own way: the same seed, different samples).
    """
    if pick_engine(model, engine) == "continuous":
        yield from generate_continuous(
            model, tokenizer, prompts, group_size=batch_size, seed=seed, max_sequences=max_sequences, **kwargs
        )
        return
    if seed is not None:
        torch.manual_seed(seed)
    ignore_eos = kwargs.pop("ignore_eos", False)
    if ignore_eos:
        kwargs["min_new_tokens"] = kwargs.get("max_new_tokens", 192)
    lengths = [len(p) for p in prompts]
    for idx in length_sorted_batches(lengths, batch_size):
        yield idx, generate_batch(model, tokenizer, [prompts[i] for i in idx], **kwargs)

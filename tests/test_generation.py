"""helpers.generation: length-sorted batches, indices back to the input order, the `generate` engine's static cache,
and the `continuous` engine (transformers' continuous batching) giving the same greedy answers."""

from __future__ import annotations

import types

import pytest

from helpers import generation, prompts


def test_batches_are_length_sorted_longest_first_and_cover_every_index():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = list(generation.length_sorted_batches(lengths, 3))
    assert batches == [[2, 6, 4], [0, 3, 5], [1]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_gpu_options_are_the_static_cache_without_compile():
    # the `generate` engine's speed-up (docs/speed.md) was measured with exactly these generate options
    assert generation.GPU_GENERATE_OPTIONS == {"cache_implementation": "static", "disable_compile": True}


@pytest.mark.slow
def test_static_cache_gives_the_dynamic_cache_greedy_outputs_in_input_order(
    smol_model, smol_tokenizer, ecqa_loaded, torch_threads
):
    """The GPU path's static cache (run here on CPU, fp32) decodes exactly what the dynamic cache does,
    with left padding over prompts of different lengths, and returns results in the input order."""
    model, tok = smol_model(), smol_tokenizer
    records = list(ecqa_loaded[0]["validation"].select(range(3)))
    texts = [prompts.render_prompt(tok, r) for r in records]
    texts[1] = texts[1].replace("Question:", "Question: (a much longer preamble, to force left padding) ")
    outs = {}
    for name, opts in {
        "dynamic": {"cache_implementation": "dynamic"},
        "static": generation.GPU_GENERATE_OPTIONS,
    }.items():
        by_index = {}
        for idx, gens in generation.generate_all(model, tok, texts, batch_size=3, max_new_tokens=24, **opts):
            by_index.update((i, g[0]) for i, g in zip(idx, gens))  # batches come longest first; idx maps back
        outs[name] = [by_index[i] for i in range(len(texts))]
    assert [g.text for g in outs["static"]] == [g.text for g in outs["dynamic"]]
    assert [g.new_tokens for g in outs["static"]] == [g.new_tokens for g in outs["dynamic"]]
    # the indices map back: each prompt generated alone gives its own result
    alone = [generation.generate_batch(model, tok, [t], max_new_tokens=24)[0][0].text for t in texts]
    assert alone == [g.text for g in outs["dynamic"]]


class Linear4bit:  # named as bitsandbytes' 4-bit layer, which is what the engine choice looks for
    pass


class _Model:
    def __init__(self, device: str, four_bit: bool = False, flag: bool = False):
        self.device = types.SimpleNamespace(type=device)
        self.layers = [Linear4bit()] if four_bit else [object()]
        self.is_loaded_in_4bit = flag  # transformers' loading flag, left set by dequantize()

    def modules(self):
        return [self, *self.layers]


def test_auto_engine_is_continuous_batching_on_a_gpu_for_full_precision_weights_only():
    assert generation.pick_engine(_Model("cuda")) == "continuous"
    assert generation.pick_engine(_Model("cuda", four_bit=True)) == "generate"  # bitsandbytes' 4-bit layers
    assert generation.pick_engine(_Model("cuda", flag=True)) == "continuous"  # dequantized: the flag stays set
    assert generation.pick_engine(_Model("cpu")) == "generate"
    assert generation.pick_engine(_Model("cpu"), "continuous") == "continuous"
    with pytest.raises(ValueError, match="engine must be one of"):
        generation.pick_engine(_Model("cpu"), "vllm")


@pytest.mark.slow
def test_continuous_batching_gives_the_generate_engines_greedy_answers_and_every_sample(
    smol_model, smol_tokenizer, ecqa_loaded, torch_threads
):
    """Greedy answers do not depend on the engine (here fp32 on CPU: equal token for token); results come back in
    the input order, grouped as asked, k samples per prompt with their token counts up to eos."""
    model, tok = smol_model(), smol_tokenizer
    texts = [prompts.render_prompt(tok, r) for r in ecqa_loaded[0]["validation"].select(range(3))]
    outs = {}
    for engine in ("generate", "continuous"):
        by_index, groups = {}, []
        for idx, gens in generation.generate_all(model, tok, texts, batch_size=2, engine=engine, max_new_tokens=20):
            groups.append(len(idx))
            by_index.update((i, g[0]) for i, g in zip(idx, gens))
        outs[engine] = [by_index[i] for i in range(len(texts))]
        assert sorted(by_index) == [0, 1, 2] and max(groups) <= 2
    assert [(g.text, g.new_tokens) for g in outs["continuous"]] == [(g.text, g.new_tokens) for g in outs["generate"]]
    sampled = list(
        generation.generate_all(
            model,
            tok,
            texts[:2],
            engine="continuous",
            max_new_tokens=8,
            temperature=0.9,
            num_return_sequences=3,
            seed=1,
        )
    )
    per_prompt = [gs for _, batch in sampled for gs in batch]
    assert len(per_prompt) == 2 and all(len(gs) == 3 and all(0 < g.new_tokens <= 8 for g in gs) for gs in per_prompt)

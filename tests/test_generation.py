"""helpers.generation: length-sorted batches, indices back to the input order, and the GPU path's static cache."""

from __future__ import annotations

import pytest

from helpers import generation, prompts


def test_batches_are_length_sorted_longest_first_and_cover_every_index():
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = list(generation.length_sorted_batches(lengths, 3))
    assert batches == [[2, 6, 4], [0, 3, 5], [1]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_gpu_options_are_the_static_cache_without_compile():
    # the published speed-up (README) was measured with exactly these generate options
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

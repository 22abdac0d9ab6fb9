"""steps/compression/generation.py: the cached greedy loop against a hand loop without the cache, eos, seeded
sampling, and decode_latency's readings."""

from __future__ import annotations

import pytest
import torch

from steps.compression import generation
from tests.compression.lm import tiny_bpe, tiny_llama

PROMPTS = ["the cat sat", "a dog ran in the"]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_llama()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_bpe()


def _argmax_without_cache(model, ids: list[int], steps: int) -> list[int]:
    ids = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[-steps:]


def test_greedy_is_the_argmax_loop_without_the_cache(model, tokenizer):
    texts = generation.greedy_generations(model, tokenizer, PROMPTS, max_new_tokens=12)
    assert texts == generation.greedy_generations(model, tokenizer, PROMPTS, max_new_tokens=12)
    for prompt, text in zip(PROMPTS, texts, strict=True):
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        expected = _argmax_without_cache(model, ids, 12)
        assert generation.continuation(model, ids, 12) == expected  # eos_id None: never stops early
        assert text == tokenizer.decode(expected, skip_special_tokens=True)


def test_generation_stops_after_eos(model, tokenizer):
    ids = tokenizer.encode(PROMPTS[0], add_special_tokens=False).ids
    full = generation.continuation(model, ids, 12)
    eos = full[3]
    stopped = generation.continuation(model, ids, 12, eos_id=eos)
    assert stopped == full[: full.index(eos) + 1]


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(model, tokenizer):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = generation.generate(model, tokenizer, PROMPTS, 12, temperature=1.0, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert generation.generate(model, tokenizer, PROMPTS, 12, temperature=1.0, seed=5) == first
    assert generation.generate(model, tokenizer, PROMPTS, 12, temperature=1.0, seed=6) != first
    assert first != generation.greedy_generations(model, tokenizer, PROMPTS, 12)


def test_prompts_that_cannot_run_are_refused(model, tokenizer):
    with pytest.raises(ValueError, match=r"prompts\[1\] \(''\) encodes to no tokens"):
        generation.greedy_generations(model, tokenizer, ["the cat", ""], 4)
    with pytest.raises(ValueError, match="past the model's max_position_embeddings 64"):
        generation.continuation(model, [5] * 60, 5)


def test_decode_latency_reads_prefill_and_decode(model):
    was_training = model.training
    reading = generation.decode_latency(model, prompt_len=8, new_tokens=4, repeats=3, warmup=1)
    for key in ("prefill_ms", "prefill_ms_p95", "decode_ms_per_token", "decode_ms_per_token_p95", "tokens_per_s"):
        assert reading[key] > 0, key
    assert reading["prefill_ms_p95"] >= reading["prefill_ms"]
    assert reading["decode_ms_per_token_p95"] >= reading["decode_ms_per_token"]
    assert (reading["prompt_len"], reading["new_tokens"], reading["repeats"], reading["batch_size"]) == (8, 4, 3, 1)
    assert model.training == was_training
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        generation.decode_latency(model, 8, 4, repeats=0)

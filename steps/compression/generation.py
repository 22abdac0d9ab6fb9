"""Text from a causal language model, and how long it takes: greedy or seeded sampled continuations of prompts,
and per-token latency at batch 1 with the KV cache, prefill and decode apart.

Why a loop of our own rather than `model.generate`: generate fills whatever the caller leaves unset from the
model's generation_config (its eos_token_id, top_k=50 for sampling), so "no stop token" or "plain temperature
sampling" cannot be asked of it by leaving them out; here eos_id=None means exactly max_new_tokens and sampling
is softmax(logits / temperature), nothing else. The loop is the same one decode_latency times: one forward over
the prompt (prefill) that fills a DynamicCache, then one forward per new token over that token alone (decode).

Prompts are encoded without the tokenizer's framing (add_special_tokens=False), as the causal_lm blocks are
(steps/sources/blocks.py), and only the new tokens are decoded. The cache goes in as `cache=` (transformers 5.25
renamed `past_key_values`, which it still takes until 5.40 with a FutureWarning).

The module imports nothing of shrinkflow: the served language model (steps/serving/generator.py) carries this file
in its code/ folder and runs the same loop the evaluation ran.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import DynamicCache


def continuation(model: nn.Module, prompt_ids: list[int], max_new_tokens: int, *, temperature: float = 0.0,
                 generator: torch.Generator | None = None, eos_id: int | None = None) -> list[int]:
    """The new token ids after `prompt_ids`: argmax at temperature 0, else drawn from softmax(logits / temperature)
    with `generator`; stops after eos_id (which is kept) or max_new_tokens. Eval mode under inference_mode."""
    if not prompt_ids:
        raise ValueError("a prompt must hold at least one token to continue from (it encoded to none)")
    _check_count("max_new_tokens", max_new_tokens, 1)
    _check_length(model, len(prompt_ids) + max_new_tokens)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
    device = _device(model)
    new: list[int] = []
    with _evaluating(model):
        cache = DynamicCache(config=model.config)
        step = torch.tensor([prompt_ids], dtype=torch.long, device=device)
        while len(new) < max_new_tokens:
            logits = model(input_ids=step, cache=cache, use_cache=True).logits[0, -1]
            token = _next_token(logits, temperature, generator)
            new.append(token)
            if token == eos_id:
                break
            step = torch.tensor([[token]], dtype=torch.long, device=device)
    return new


def generate(model: nn.Module, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int, *,
             temperature: float = 0.0, seed: int = 0, eos_id: int | None = None) -> list[str]:
    """Each prompt's continuation as text (the new tokens only, special tokens such as eos left out), one prompt
    at a time at batch 1 (no padding to get wrong). Sampling (temperature > 0) draws from one torch.Generator
    seeded with `seed`, so the same prompts, in the same order, give the same texts; the global RNG is left alone.
    The tokenizer's truncation and padding are turned off (as steps/sources/blocks.py does): a prompt is never cut."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    generator = torch.Generator(device=_device(model)).manual_seed(seed) if temperature > 0 else None
    texts = []
    for i, prompt in enumerate(prompts):
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        if not ids:
            raise ValueError(f"prompts[{i}] ({prompt!r}) encodes to no tokens")
        new = continuation(model, ids, max_new_tokens, temperature=temperature, generator=generator, eos_id=eos_id)
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return texts


def greedy_generations(model: nn.Module, tokenizer: Tokenizer, prompts: list[str], max_new_tokens: int,
                       eos_id: int | None = None) -> list[str]:
    """generate at temperature 0: each prompt's argmax continuation, deterministic."""
    return generate(model, tokenizer, prompts, max_new_tokens, eos_id=eos_id)


def decode_latency(model: nn.Module, prompt_len: int, new_tokens: int, repeats: int = 20, warmup: int = 3,
                   seed: int = 0) -> dict[str, float | int | str]:
    """Batch-1 latency with the KV cache, in ms: prefill (one forward over a prompt of `prompt_len` tokens) and
    decode (one forward per each of `new_tokens` greedy tokens, the cache growing), timed apart with
    time.perf_counter (the device synchronised before each reading) in eval mode under inference_mode, `warmup`
    untimed runs first. The prompt is `seed`'s random ids: the content does not change the work.

    Keys: prefill_ms, prefill_ms_p95, decode_ms_per_token, decode_ms_per_token_p95 (p50 and p95 over the
    repeats; each repeat's decode is its total over new_tokens), tokens_per_s (1000 / decode p50), prompt_len,
    new_tokens, repeats, warmup, batch_size, device. With few repeats the p95 is near the slowest repeat."""
    _check_count("prompt_len", prompt_len, 1)
    _check_count("new_tokens", new_tokens, 1)
    _check_count("repeats", repeats, 1)
    _check_count("warmup", warmup, 0)
    _check_length(model, prompt_len + new_tokens)
    device = _device(model)
    ids = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_len), generator=ids).to(device)
    prefill, decode = [], []
    with _evaluating(model):
        for run in range(warmup + repeats):
            p, d = _timed_run(model, prompt, new_tokens, device)
            if run >= warmup:
                prefill.append(p)
                decode.append(d / new_tokens)
    p50 = float(np.median(decode))
    return {"prefill_ms": float(np.median(prefill)), "prefill_ms_p95": float(np.quantile(prefill, 0.95)),
            "decode_ms_per_token": p50, "decode_ms_per_token_p95": float(np.quantile(decode, 0.95)),
            "tokens_per_s": 1000.0 / p50, "prompt_len": prompt_len, "new_tokens": new_tokens, "repeats": repeats,
            "warmup": warmup, "batch_size": 1, "device": str(device)}


def _timed_run(model: nn.Module, prompt: torch.Tensor, new_tokens: int, device: torch.device) -> tuple[float, float]:
    """(prefill ms, total decode ms) of one greedy run from a fresh cache."""
    cache = DynamicCache(config=model.config)
    _sync(device)
    start = time.perf_counter()
    logits = model(input_ids=prompt, cache=cache, use_cache=True).logits
    _sync(device)
    prefilled = time.perf_counter()
    for _ in range(new_tokens):
        step = logits[:, -1:].argmax(-1)
        logits = model(input_ids=step, cache=cache, use_cache=True).logits
    _sync(device)
    done = time.perf_counter()
    return (prefilled - start) * 1000.0, (done - prefilled) * 1000.0


def _next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _check_length(model: nn.Module, length: int) -> None:
    """Refuse to run past the positions the model was built for (its outputs there mean nothing)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ValueError(f"prompt and new tokens make {length} positions, past the model's max_position_embeddings "
                         f"{limit}; shorten the prompt or ask for fewer new tokens")


def _check_count(name: str, value: int, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """Eval mode under inference_mode, the previous mode restored (steps.compression.training's, repeated so that
    this file runs alone inside a registered model)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

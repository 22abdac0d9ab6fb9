"""steps/compression/transfer.py and training.Split.batch: on CPU a split and its batches are untouched (the same
objects, nothing pinned, the same values as plain indexing); on CUDA pinned and copied asynchronously."""

from __future__ import annotations

import pytest
import torch

from steps.compression import transfer
from steps.compression.training import Split, to_device


def _splits() -> tuple[Split, Split]:
    g = torch.Generator().manual_seed(0)
    images = Split(torch.randn(10, 1, 4, 4, generator=g), torch.arange(10) % 3)
    ids = torch.randint(0, 50, (10, 6), generator=g)
    text = Split({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids)
    return images, text


@pytest.mark.parametrize("which", [0, 1], ids=["images", "text"])
def test_on_cpu_a_split_is_returned_itself_unpinned(which):
    split = _splits()[which]
    before = {k: t.clone() for k, t in split.x.items()} if isinstance(split.x, dict) else split.x.clone()
    assert transfer.pinned(split, torch.device("cpu")) is split
    tensors = list(split.x.values()) if isinstance(split.x, dict) else [split.x]
    assert not any(t.is_pinned() for t in [*tensors, split.y])
    after = split.x if isinstance(split.x, dict) else {"x": split.x}
    expected = before if isinstance(before, dict) else {"x": before}
    assert all(torch.equal(after[k], expected[k]) for k in expected)


def test_on_cpu_a_batch_is_plain_indexing_and_to_device_is_identity():
    images, text = _splits()
    idx = torch.tensor([7, 2, 5])
    x, y = images.batch(idx, torch.device("cpu"))
    assert torch.equal(x, images.x[idx]) and torch.equal(y, images.y[idx]) and not x.is_pinned()
    tx, _ = text.batch(idx, torch.device("cpu"))
    assert torch.equal(tx["input_ids"], text.x["input_ids"][idx]) and not tx["input_ids"].is_pinned()
    assert to_device(images.x, torch.device("cpu")) is images.x  # .to(cpu) of a CPU tensor: itself, no copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: pinned memory needs one")
def test_on_cuda_the_split_is_pinned_once_and_batches_arrive_equal():
    images, _ = _splits()
    device = torch.device("cuda")
    pinned = transfer.pinned(images, device)
    assert pinned.x.is_pinned() and pinned.y.is_pinned() and not images.x.is_pinned()
    assert transfer.pinned(pinned, device).x.data_ptr() == pinned.x.data_ptr()  # pinned once, not again
    idx = torch.tensor([7, 2, 5])
    assert transfer.pinned_rows(pinned.x, idx).is_pinned()
    x, y = pinned.batch(idx, device)
    assert x.device.type == "cuda" and torch.equal(x.cpu(), images.x[idx]) and torch.equal(y.cpu(), images.y[idx])

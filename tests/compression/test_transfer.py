"""steps/compression/transfer.py and training.Split.batch: on CPU a batch is plain indexing (nothing pinned); on
CUDA each batch is gathered into pinned memory and copied asynchronously."""

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


def test_on_cpu_a_batch_is_plain_indexing_and_to_device_is_identity():
    images, text = _splits()
    idx = torch.tensor([7, 2, 5])
    x, y = images.batch(idx, torch.device("cpu"))
    assert torch.equal(x, images.x[idx]) and torch.equal(y, images.y[idx]) and not x.is_pinned()
    tx, _ = text.batch(idx, torch.device("cpu"))
    assert torch.equal(tx["input_ids"], text.x["input_ids"][idx]) and not tx["input_ids"].is_pinned()
    assert to_device(images.x, torch.device("cpu")) is images.x  # .to(cpu) of a CPU tensor: itself, no copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: pinned memory needs one")
def test_on_cuda_a_batch_is_gathered_into_pinned_memory_and_arrives_equal():
    images, _ = _splits()
    device = torch.device("cuda")
    idx = torch.tensor([7, 2, 5])
    assert transfer.pinned_rows(images.x, idx).is_pinned() and not images.x.is_pinned()  # the split stays pageable
    x, y = images.batch(idx, device)
    assert x.device.type == "cuda" and torch.equal(x.cpu(), images.x[idx]) and torch.equal(y.cpu(), images.y[idx])

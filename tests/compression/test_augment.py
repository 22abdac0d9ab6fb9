"""Augmentation keeps images recognisable and is seeded; the cosine schedule anneals to zero."""

from __future__ import annotations

import pytest
import torch

from steps.compression.augment import for_training, shift_and_flip
from steps.compression.training import Split, cross_entropy_loss, train_epochs


def block_images(n: int) -> torch.Tensor:
    x = torch.full((n, 1, 28, 28), -0.8)
    x[:, :, 10:14, 4:8] = 2.0  # one bright block left of centre
    return x


def test_shift_and_flip_moves_at_most_two_pixels_keeps_content_and_fills_background():
    x = block_images(256)
    out = shift_and_flip(torch.Generator().manual_seed(0))(x)
    assert out.shape == x.shape
    assert torch.equal((out == 2.0).sum((1, 2, 3)), (x == 2.0).sum((1, 2, 3)))  # the block is never cut off
    assert torch.equal(out.unique(), x.unique())  # padding is the background value, not 0
    cols = (out == 2.0).any(2).squeeze(1).float().argmax(1)  # first bright column per image
    flipped = cols > 14
    assert 0 < flipped.sum() < len(x)  # some mirrored, some not
    assert cols[~flipped].min() >= 2 and cols[~flipped].max() <= 6  # 4 +- 2
    assert not torch.equal(out, x)


def test_augmentation_is_seeded():
    x = block_images(64)
    first = shift_and_flip(torch.Generator().manual_seed(3))(x)
    again = shift_and_flip(torch.Generator().manual_seed(3))(x)
    other = shift_and_flip(torch.Generator().manual_seed(4))(x)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert for_training(False, seed=0) is None


def test_cosine_schedule_anneals_learning_rate_to_zero_and_constant_keeps_it(one_thread):
    split = Split(torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,)))
    for name, final in (("cosine", 0.0), ("constant", 0.1)):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train_epochs(model, optimizer, len(split), 8, 2, cross_entropy_loss(split, torch.device("cpu")),
                     generator=torch.Generator().manual_seed(0), description="t", lr_schedule=name)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(final, abs=1e-9)

"""Label-preserving augmentation for 28x28 garment images: random shifts and horizontal flips.

A shirt moved by two pixels or mirrored is still a shirt, so the model sees a
fresh variant of each image every epoch; this is what lifts a 2-conv CNN past
92% on Fashion-MNIST. Seeded by its own generator, so batch order (and with it
every other result) stays identical whether augmentation is on or off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional

from steps.compression import parallel

Augment = Callable[[torch.Tensor], torch.Tensor]


def shift_and_flip(generator: torch.Generator, max_shift: int = 2) -> Augment:
    """Each image moves by up to `max_shift` px on each axis (filled with the background) and is
    mirrored with probability 1/2."""

    def augment(x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        background = float(x.amin())  # normalised black, not 0
        padded = functional.pad(x, (max_shift,) * 4, value=background)
        dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)).to(x.device)
        rows = (dy[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        shifted = padded[torch.arange(n, device=x.device)[:, None, None, None],
                         torch.arange(channels, device=x.device)[None, :, None, None], rows, cols]
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        return torch.where(flip, shifted.flip(-1), shifted)

    return augment


def for_training(enabled: bool, seed: int) -> Augment | None:
    """Shifts and flips drawn from `seed` + 1, and under torch.distributed from a stream of each rank's own (the
    ranks' rows must not all get rank 0's transforms); one process draws exactly what it always did."""
    return shift_and_flip(torch.Generator().manual_seed(seed + 1 + parallel.rank())) if enabled else None

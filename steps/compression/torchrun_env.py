"""What torchrun tells a rank through its environment: whether this process is a rank, the world, its GPU.

Torch-free, so the launcher (steps/core/launch.py: start torchrun or not) and the process group
(steps/compression/parallel.py: join one or not) ask the one question the one way. TORCHELASTIC_RUN_ID, not
WORLD_SIZE: torchrun (and any torchelastic agent) sets it in every rank, a user's shell does not, whereas a stray
WORLD_SIZE (left by another launcher or a job script) would make a plain process wait for ranks that never come.
"""

from __future__ import annotations

import os

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"
"""Set by torchrun in each rank's environment (with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""
WORLD_SIZE_ENV = "WORLD_SIZE"
LOCAL_RANK_ENV = "LOCAL_RANK"
"""The rank's number on its machine: which of the machine's GPUs it trains on."""


def inside_torchrun() -> bool:
    """True in a rank torchrun started (even a world of one), False in any other process whatever it inherited."""
    return TORCHRUN_ENV in os.environ


def world_size() -> int:
    """The ranks torchrun started (1 outside torchrun)."""
    return int(os.environ.get(WORLD_SIZE_ENV, "1")) if inside_torchrun() else 1


def local_rank() -> int:
    """The index of the GPU this rank trains on: its number on its machine (0 outside torchrun)."""
    return int(os.environ.get(LOCAL_RANK_ENV, "0")) if inside_torchrun() else 0

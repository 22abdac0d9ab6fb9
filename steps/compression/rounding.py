"""The one rounding rule for how many units (channels, neurons, heads, blocks) a pruned layer keeps.

Structured channel pruning, the ViT's MLP and embedding widths, its heads and blocks, and the budget
search's candidate widths all keep `keep(n, fraction, round_to)` of `n`, so the same params give the same
widths whichever method cut them.
"""

from __future__ import annotations


def keep(n: int, fraction: float, round_to: int = 1) -> int:
    """round(n * fraction) rounded down to a multiple of `round_to`, at least `round_to`, at most `n`.

    round() first, so float noise (10 * 0.7 = 6.999...) cannot cost a unit; then down to a multiple, since
    CPU kernels work on blocks of 8 or 16 channels: ONNX Runtime ran a CNN pruned to 21/42/83 channels
    slower than the unpruned 32/64/128 one, and one pruned to 16/48/96 1.9x faster (benchmarks/README.md).
    With round_to 1 this is "round(n * fraction), at least one".
    """
    if round_to < 1:
        raise ValueError(f"need round_to >= 1, got {round_to}")
    return min(n, max(round_to, round(n * fraction) // round_to * round_to))

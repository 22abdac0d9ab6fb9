"""Synthetic labels and predictions for the promotion tests, and the default promote policy with changes."""

from __future__ import annotations

import numpy as np

from steps import config
from tests.helpers import default_params

CLASSES = [f"class{k}" for k in range(10)]


def policy(**values) -> config.PromoteConfig:
    return config.PromoteConfig(**{**default_params()["promote"], **values})


def predictions(n: int, champion_right: float, challenger_extra: int, seed: int = 0):
    """Labels, a champion right on a fraction of items, and a challenger fixing `challenger_extra` more items."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    champion = np.where(rng.random(n) < champion_right, y, (y + 1) % 10)
    challenger = champion.copy()
    wrong = np.flatnonzero(champion != y)
    challenger[wrong[:challenger_extra]] = y[wrong[:challenger_extra]]
    return y, champion, challenger

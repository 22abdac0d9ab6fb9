"""prune.finetune.epochs 0: prune and distill with no fine-tuning between (Minitron's recipe)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from steps.config.prune import PruneConfig

BASE = {"method": "transformer", "rounds": 1, "target_sparsity": 0.5, "transformer": {"depth": 0.5},
        "finetune": {"epochs": 0, "batch_size": 8, "lr": 1e-4}}


def test_zero_finetune_epochs_are_taken_and_negative_ones_refused_by_key():
    assert PruneConfig.model_validate(BASE).finetune.epochs == 0
    with pytest.raises(ValidationError, match="finetune.epochs"):
        PruneConfig.model_validate({**BASE, "finetune": {**BASE["finetune"], "epochs": -1}})

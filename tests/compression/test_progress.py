"""What a person sees while a model trains: one progress line per epoch, with what the epoch measured."""

import logging
import re

import pytest
import torch
from torch import nn

from steps.compression import progress
from steps.compression.training import Split, adam, cross_entropy_loss, train_epochs

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCH_LINE = re.compile(r"^tiny: epoch (\d+)/3, train_loss (\d+\.\d{4}), val_accuracy (\d\.\d{4}), \d+\.\d s$")


def tiny_run(on_epoch) -> nn.Module:
    torch.manual_seed(0)
    split = Split(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    model = nn.Linear(4, 3)
    train_epochs(model, adam(model.parameters(), 0.01, 0.0), len(split), 16, 3,
                 cross_entropy_loss(split, torch.device("cpu")), generator=torch.Generator().manual_seed(0),
                 description="tiny", on_epoch=on_epoch)
    return model


def test_every_epoch_writes_one_line_with_its_number_loss_and_what_it_measured(caplog):
    losses = []

    def on_epoch(epoch: int, loss: float) -> dict[str, float]:
        losses.append(loss)
        return {"val_accuracy": 0.25 * epoch}

    with caplog.at_level(logging.INFO, logger=progress.LOGGER_NAME):
        tiny_run(on_epoch)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.LOGGER_NAME]
    matches = [EPOCH_LINE.match(line) for line in lines]
    assert all(matches) and len(matches) == 3, lines
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    assert [float(m.group(2)) for m in matches] == [pytest.approx(loss, abs=5e-5) for loss in losses]
    assert [m.group(3) for m in matches] == ["0.2500", "0.5000", "0.7500"]


def test_a_line_names_its_phase_step_values_and_seconds():
    line = progress.line("prune", "round 2/4", {"sparsity": 0.5, "parameters": 26722, "fits": "yes"}, 12.34)
    assert line == "prune: round 2/4, sparsity 0.5000, parameters 26,722, fits yes, 12.3 s"
    assert progress.line("budget search", "sensitivity from the cache", {}, 0.0) == \
        "budget search: sensitivity from the cache, 0.0 s"

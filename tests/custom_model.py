"""A user's own model as a project would define one, for the `custom` architecture in tests."""

from torch import nn


def small_net(in_channels: int = 1, width: int = 8, classes: int = 10) -> nn.Module:
    """Conv + BN + ReLU, global pool, Linear: any image size, prunable by channel."""
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

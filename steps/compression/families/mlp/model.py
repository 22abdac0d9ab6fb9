"""The mlp family's model and hooks: channel (neuron) pruning, features or images alike."""

from __future__ import annotations

import math

from torch import nn

from steps.compression.families import Family
from steps.compression.families.layers import (
    built_of_resizable_layers,
    classifier,
    no_layers,
    same_spec,
    sequential_pooled_layer,
    zeros_input,
)
from steps.compression.families.mlp.config import MLPConfig
from steps.compression.families.resize import shrink_to
from steps.compression.families.spec import ModelSpec


class MLP(nn.Sequential):
    """Flatten, then Linear+ReLU per hidden width, then the output layer."""

    shrinkflow_family = "mlp"

    def __init__(self, spec: ModelSpec) -> None:
        inputs = math.prod(spec.sample_shape)  # pixels of an image, or a table's features
        super().__init__(nn.Flatten(), *classifier(inputs, spec.hidden, spec.num_classes))


FAMILY = Family("mlp", frozenset({"magnitude", "structured"}), True, sequential_pooled_layer, no_layers, no_layers,
                config=MLPConfig, build=MLP, needs_images=False, spec_of=same_spec, fit_weights=shrink_to,
                example_input=zeros_input, refuse_unprunable=built_of_resizable_layers)

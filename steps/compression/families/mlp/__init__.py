"""The mlp family: a multilayer perceptron on flattened samples (an image's pixels or a table's features)."""

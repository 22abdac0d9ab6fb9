"""The cnn family: Conv3x3 [+BN] + ReLU + MaxPool2 stages, then an MLP head."""

"""The resnet family: a CIFAR-style ResNet of BasicBlocks (He et al. 2016)."""

"""The custom family: the user's own nn.Module, built by `factory(**kwargs)` from their project."""

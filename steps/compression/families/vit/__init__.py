"""The vit family: a Vision Transformer (Dosovitskiy et al. 2021), pruned by heads, MLP width, embedding and depth."""

"""Batch scoring (`shrinkflow predict`): raw inputs read in batches, scored by a registered model, written whole.

`contract` (what the registered model says it takes), `readers` (an image folder, an IDX or .npz file, a
Parquet or CSV table -> batches of (ids, raw batch, unreadable rows)), `writer` (Parquet or CSV, written
to a temporary file and renamed into place), `batch` (the loop: score, name the rows a model refuses,
skip or fail). Torch-free and MLflow-free: the command passes the model's `predict` in.
"""

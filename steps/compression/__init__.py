"""The torch side of shrinkflow: models, pruning, distillation, measurement.

Nothing here knows about Prefect, MLflow or DVC, so it can be used and tested
on its own.
"""

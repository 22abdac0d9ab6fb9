"""The "models from code" file MLflow stores with a registered language model and runs to load it (no pickle).

Inside a registered model this package is importable as `serving` (its code/ folder); when MLflow
runs this file at logging time, inside the project, it is `steps.serving`.
"""

import mlflow

try:
    from serving.generator import TextGenerator
except ImportError:
    from steps.serving.generator import TextGenerator

mlflow.models.set_model(TextGenerator())

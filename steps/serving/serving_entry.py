"""The "models from code" file MLflow stores with a registered model and runs to load it (no pickle).

Inside a registered model this package is importable as `serving` (its code/ folder); when MLflow
runs this file at logging time, inside the project, it is `steps.serving`.
"""

import mlflow

try:
    from serving.classifier import RawInputClassifier
except ImportError:
    from steps.serving.classifier import RawInputClassifier

mlflow.models.set_model(RawInputClassifier())

"""What production calls: the registered model's input contract, raw inputs to a batch, answers with names.

Torch-free and self-contained (relative imports only): the registered MLflow model carries this
package in its `code/` folder and imports it as `serving`, so a scoring server needs numpy, pandas,
Pillow and ONNX Runtime, not shrinkflow or PyTorch. A language model is the exception: generator.py loads
it with torch and transformers (imported when it loads, by generator_entry.py only).
"""

"""The hf family: a Hugging Face `transformers` encoder with a sequence-classification head, on text data."""

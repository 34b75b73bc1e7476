"""Inference engines (transformers on CPU/small models, vLLM on GPUs) behind one interface."""

"""Inference engines for data generation: transformers (hf) or vLLM, behind one small interface."""

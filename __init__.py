"""phasegate: a session controller for supervised LLM fine-tuning on rented GPUs."""

__version__ = "0.1.0"

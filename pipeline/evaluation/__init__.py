"""Built-in phases, evaluating: paired evaluation of the base model against base + adapter."""

"""Built-in phases, loading a model: the clean loader, contamination checks and the sentinel cases."""

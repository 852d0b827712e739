"""Built-in phases, making data: pilot, scale (shards, executors), QC, de-duplication and the held-out test set."""

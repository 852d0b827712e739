"""Shared helpers of the sample Stage 1 scripts."""

"""The terminal UI: a Textual app that reads a run's journal and writes operator commands.

Importing this package does not import textual; `phasegate.tui.launch` and `phasegate.tui.app` do.
"""

"""The demo: its session, corpus, model trainer, tiny-model builder and rule reviewer; nothing in the core imports it."""

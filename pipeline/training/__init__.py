"""Built-in phases, training: LoRA/QLoRA SFT, its data, loop, resumable state and launcher."""

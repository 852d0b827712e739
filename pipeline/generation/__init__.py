"""Built-in phases, generating text: completion prompts, batched generation and the A/B critic."""

"""Sample canonical loader: the one place allowed to disable chat templates and special tokens."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoModelForCausalLM, AutoTokenizer


@dataclass
class CleanModelLoader:
    """Loads a base model with no chat template, so completions are never contaminated by one."""

    model_name: str
    load_in_4bit: bool = False

    def load(self):
        """Return (model, tokenizer) ready for raw completion prompts."""
        tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        # A base model must see plain text: a template would make it look instruction-tuned.
        tokenizer.chat_template = None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.model_name, device_map="auto")
        model.eval()
        return model, tokenizer

    def tokenize(self, tokenizer, prompt: str):
        """Tokenize a completion prompt exactly as written (no BOS/EOS added by the tokenizer)."""
        return tokenizer(prompt, return_tensors="pt", add_special_tokens=False)

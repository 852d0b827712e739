"""Sample pre-migration evaluation, kept for history: the policy excludes `archived/`."""

from transformers import AutoModelForCausalLM, AutoTokenizer


def load(model_name):
    """Load the way scripts did before CleanModelLoader existed."""
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    tokenizer.chat_template = None
    model = AutoModelForCausalLM.from_pretrained(model_name)
    return model, tokenizer


def encode(tokenizer, prompt):
    """Tokenize without special tokens, by hand."""
    return tokenizer(prompt, add_special_tokens=False)

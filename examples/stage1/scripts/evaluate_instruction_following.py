"""Sample migrated baseline evaluation: loads the base model only through CleanModelLoader."""

from __future__ import annotations

import argparse
import json

from utils.clean_model_loader import CleanModelLoader

PROMPT = "Instruction: {instruction}\nResponse:"


def main() -> None:
    """Generate one completion per instruction and write them as JSON lines."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--instructions", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    loader = CleanModelLoader(args.model)
    model, tokenizer = loader.load()
    with open(args.instructions) as source, open(args.out, "w") as sink:
        for line in source:
            instruction = json.loads(line)["instruction"]
            inputs = loader.tokenize(tokenizer, PROMPT.format(instruction=instruction))
            output = model.generate(**inputs, max_new_tokens=128, do_sample=False)
            text = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :])
            sink.write(json.dumps({"instruction": instruction, "response": text}) + "\n")


if __name__ == "__main__":
    main()

"""Sample migrated pilot data generation: completion-style prompts through CleanModelLoader."""

from __future__ import annotations

import argparse
import json

from utils.clean_model_loader import CleanModelLoader

# Never write `tokenizer.chat_template = None` here: the loader already did it.
FEW_SHOT = (
    "Instruction: Name a primary color.\nResponse: Red.\n\nInstruction: {instruction}\nResponse:"
)


def main() -> None:
    """Write one pilot row per seed instruction."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--seeds", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    loader = CleanModelLoader(args.model)
    model, tokenizer = loader.load()
    with open(args.seeds) as seeds, open(args.out, "w") as out:
        for line in seeds:
            instruction = json.loads(line)["instruction"]
            inputs = loader.tokenize(tokenizer, FEW_SHOT.format(instruction=instruction))
            output = model.generate(
                **inputs,
                max_new_tokens=256,
                do_sample=True,
                temperature=0.7,
            )
            response = tokenizer.decode(output[0][inputs["input_ids"].shape[1] :]).split("\n\n")[0]
            out.write(json.dumps({"instruction": instruction, "response": response.strip()}) + "\n")


if __name__ == "__main__":
    main()

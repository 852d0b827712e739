"""Make a small labelled review data set (deterministic), one JSON object per line."""

import argparse
import json
import os
import random

from events import emit

POSITIVE = ["great", "excellent", "loved", "wonderful", "superb", "fine", "enjoyable", "clear"]
NEGATIVE = ["awful", "boring", "hated", "terrible", "broken", "dull", "confusing", "slow"]
FILLER = ["the", "movie", "plot", "was", "and", "acting", "really", "quite", "book", "story"]


def make_row(rng):
    label = rng.choice(["pos", "neg"])
    words = rng.sample(FILLER, 5) + rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2)
    if rng.random() < 0.1:  # some noise, so the model is not perfect
        words.append(rng.choice(NEGATIVE if label == "pos" else POSITIVE))
    rng.shuffle(words)
    return {"text": " ".join(words), "label": label}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as handle:
        for i in range(args.rows):
            handle.write(json.dumps(make_row(rng)) + "\n")
            if (i + 1) % 100 == 0:
                emit(type="progress", done=i + 1, total=args.rows)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, args.out)
    emit(type="artifact", path=os.path.abspath(args.out))
    emit(type="metric", name="rows", value=args.rows)
    print(f"wrote {args.rows} rows to {args.out}")


if __name__ == "__main__":
    main()

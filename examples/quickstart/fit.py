"""Fit a word-count (naive Bayes) classifier on the first 80 % of the data."""

import argparse
import json
import math
import os
from collections import Counter

from events import emit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data)]
    train = rows[: int(len(rows) * 0.8)]
    counts = {"pos": Counter(), "neg": Counter()}
    for i, row in enumerate(train):
        counts[row["label"]].update(row["text"].split())
        if (i + 1) % 80 == 0:
            emit(type="progress", done=i + 1, total=len(train))
    vocab = set(counts["pos"]) | set(counts["neg"])
    model = {}
    for label, counter in counts.items():
        total = sum(counter.values()) + len(vocab)
        model[label] = {word: math.log((counter[word] + 1) / total) for word in sorted(vocab)}
    with open(args.out + ".tmp", "w") as handle:
        json.dump(model, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(args.out + ".tmp", args.out)
    emit(type="metric", name="train_rows", value=len(train))
    emit(type="metric", name="vocab", value=len(vocab))
    print(f"fitted on {len(train)} rows, vocabulary {len(vocab)}")


if __name__ == "__main__":
    main()

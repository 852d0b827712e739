"""Score the classifier on the held-out 20 % and write metrics.json for the threshold gate."""

import argparse
import json
import os

from events import emit


def predict(model, text):
    scores = {label: sum(weights.get(w, 0.0) for w in text.split()) for label, weights in model.items()}
    return max(scores, key=scores.get)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = json.load(open(args.model))
    rows = [json.loads(line) for line in open(args.data)]
    held_out = rows[int(len(rows) * 0.8):]
    correct = sum(predict(model, r["text"]) == r["label"] for r in held_out)
    metrics = {"accuracy": correct / len(held_out), "held_out": len(held_out)}
    with open(args.out + ".tmp", "w") as handle:
        json.dump(metrics, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(args.out + ".tmp", args.out)
    emit(type="metric", name="accuracy", value=metrics["accuracy"])
    print(f"accuracy {metrics['accuracy']:.3f} on {len(held_out)} held-out rows")


if __name__ == "__main__":
    main()

"""QC of a pilot data file produced by your own generation script (standard library only).

Copies the rows into the phase's artifact folder as pilot_data.jsonl and writes qc_summary.json
with the reference workflow's metrics, for the `threshold` and `artifact` gates to decide on.
Leakage is measured twice, as phasegate's built-in pilot does: `leakage_count` counts the data
rows that leak (must be 0), `leakage_rate` the fraction of all candidates that leaked (--candidates,
every generated row kept or not; without it, the data rows). distinct_1/distinct_2 are unique
word n-grams over all word n-grams of the responses.
"""

import argparse
import json
import os
import re
import shutil
import statistics


def rate(flags):
    return sum(flags) / len(flags) if flags else None


def leaks(row):
    return bool((row.get("generation") or {}).get("leakage"))


def distinct(texts, n):
    grams = []
    for text in texts:
        words = re.sub(r"[^\w]+", " ", text.casefold()).split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def metrics(rows, candidates):
    gens = [r["generation"] for r in rows if r.get("generation")]
    responses = [r.get("response") or "" for r in rows]
    return {
        "n_rows": len(rows),
        "n_candidates": len(candidates),
        "runaway_rate": rate([g["runaway"] for g in gens]),
        "token_limit_rate": rate([g["hit_token_limit"] for g in gens]),
        "leakage_count": sum(leaks(r) for r in rows),
        "leakage_rate": rate([leaks(r) for r in candidates]),
        "distinct_1": distinct(responses, 1),
        "distinct_2": distinct(responses, 2),
        "median_tokens": statistics.median(g["n_new_tokens"] for g in gens) if gens else None,
        "instruction_acceptance": rate([bool(r.get("instruction_critique", {}).get("accepted")) for r in rows]),
        "pair_acceptance": rate([bool(r.get("pair_critique", {}).get("accepted")) for r in rows]),
    }


def read_rows(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_json(path, data):
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="the pilot rows (JSON lines)")
    parser.add_argument("--out", required=True, help="the phase's artifact folder")
    parser.add_argument("--candidates", help="every generated row, kept or not (JSON lines)")
    args = parser.parse_args()
    rows = read_rows(args.data)
    candidates = read_rows(args.candidates) if args.candidates else rows
    shutil.copyfile(args.data, os.path.join(args.out, "pilot_data.jsonl"))
    summary = metrics(rows, candidates)
    write_json(os.path.join(args.out, "qc_summary.json"), summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

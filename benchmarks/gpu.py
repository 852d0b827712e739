"""GPU benchmark through phasegate's own code paths: a 7B-shaped random model on one GPU, no download.

Run: `make bench-gpu` (or `python benchmarks/gpu.py`). On CUDA it builds Qwen2.5-7B's shape (hidden 3584, 28
layers, 28 heads / 4 KV heads, vocab 152064) with random bf16 weights on the GPU and the small offline
tokenizer of the tests; without CUDA it runs the same code on a tiny shape in under a minute (a test keeps
it working). It measures generation tokens/s at batch 16, 64 and 128 (hf engine, and vLLM when it imports),
the GPU-minutes 15k kept rows would take, the A/B critic with and without the shared-prefix cache against
per-item scoring, LoRA SFT tokens/s and peak memory with and without gradient checkpointing (and QLoRA nf4
when bitsandbytes imports), NVML's readings against torch's, and the OOM stop on a real CUDA out-of-memory.

Each run stores its figures under its device kind ("gpu" or "cpu") in benchmarks/gpu-figures.json and
rewrites benchmarks/GPU.md from both, side by side; `python -m benchmarks` appends GPU.md to RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from phasegate.demo.tinymodel import build_tiny_model  # noqa: E402
from phasegate.pipeline.engines.engine import HfEngine  # noqa: E402
from phasegate.pipeline.files import RUN_DIR_ENV  # noqa: E402
from phasegate.pipeline.generation.critic import score_ab, score_ab_plain  # noqa: E402
from phasegate.pipeline.generation.generate import GenerationSettings  # noqa: E402
from phasegate.pipeline.generation.prompts import (  # noqa: E402
    SEED_INSTRUCTIONS,
    instruction_critic_prompt,
    response_prompt,
)
from phasegate.pipeline.model.loader import load_clean  # noqa: E402
from phasegate.pipeline.model.spec import ModelSpec  # noqa: E402
from phasegate.session.gpu import NvmlReader  # noqa: E402

HERE = Path(__file__).resolve().parent
SHAPES = {
    "7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 4096},
    # The tests' 2-layer, 64-wide model and its 402-token vocabulary (a 152k vocabulary alone would take the
    # CPU run past a minute). The 7B's ids past the tokenizer's vocabulary decode to nothing, like unused ids.
    "tiny": {},
}
BATCHES = (16, 64, 128)
NEW_TOKENS = {"7b": 64, "tiny": 16}
CRITIC_PROMPTS = 64
# The demo pilot's kept rows per candidate (README: n_kept 34 of 48 candidates); a pilot candidate costs
# an instruction (<= 48 new tokens), a response (<= 100) and two critic forwards.
DEMO_KEPT_PER_CANDIDATE = 34 / 48
TOKENS_PER_CANDIDATE, CRITIC_FORWARDS_PER_CANDIDATE = 48 + 100, 2
SFT = {"max_length": 256, "batch_size": 8, "max_steps": 8, "lora_r": 16, "lora_alpha": 32,
       "save_every": 1000, "log_every": 1000, "data": ["train.jsonl"]}


class NvmlWatch:
    """NVML read every half second in a thread: the peaks of memory, utilisation and power."""

    def __init__(self) -> None:
        self.reader, self.peaks, self.reason = NvmlReader(), {}, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for sample in self.reader.read([os.getpid()]):
                if not sample.available:
                    self.reason = sample.reason
                    continue
                for key in ("mem_used_mb", "util_pct", "power_w", "proc_mem_mb"):
                    value = getattr(sample, key)
                    if value is not None:
                        self.peaks[key] = max(self.peaks.get(key, 0.0), value)

    def __enter__(self) -> NvmlWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _timed(fn) -> tuple[float, Any]:
    """Seconds one call took (GPU work finished), and its result."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def build_model(root: Path, shape: str, device: str) -> Path:
    """The shape's random model and the offline tokenizer, saved where phasegate's loader reads it."""
    dtype = torch.bfloat16 if device == "cuda" else None
    return build_tiny_model(root / f"model-{shape}", arch="qwen2", shape=SHAPES[shape], device=device, dtype=dtype)


def _prompts() -> list[str]:
    """The pilot's completion-style response prompts, one per row of the largest batch."""
    return [response_prompt(SEED_INSTRUCTIONS[k % len(SEED_INSTRUCTIONS)]) for k in range(max(BATCHES))]


def bench_generation(loaded, shape: str) -> dict[str, Any]:
    """New tokens/s for the pilot's completion prompts at each batch size on the hf engine."""
    prompts = _prompts()
    engine = HfEngine(loaded.model, loaded.tokenizer)
    found: dict[str, Any] = {}
    for batch in BATCHES:
        settings = GenerationSettings(max_new_tokens=NEW_TOKENS[shape], batch_size=batch)
        engine.generate(prompts[:batch], settings)  # warm-up: kernels, allocator
        seconds, rows = _timed(lambda s=settings: engine.generate(prompts, s))
        found[f"hf_batch{batch}_tps"] = sum(r.n_new_tokens for r in rows) / seconds
    return found


def bench_vllm(spec: ModelSpec, shape: str) -> float | str:
    """vLLM's tokens/s on the same prompts, or why it was not measured."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "vLLM not installed"
    from phasegate.pipeline.engines.vllm_engine import VllmEngine

    prompts = _prompts()
    vllm_spec = spec.model_copy(update={"engine": "vllm"})
    engine = VllmEngine.start(load_clean(spec, checks=False).release_model(), vllm_spec)
    settings = GenerationSettings(max_new_tokens=NEW_TOKENS[shape])
    engine.generate(prompts[:8], settings)
    seconds, rows = _timed(lambda: engine.generate(prompts, settings))
    return sum(r.n_new_tokens for r in rows) / seconds


def bench_critic(loaded) -> dict[str, Any]:
    """Critic forwards/s per item, batched and batched with the prefix cache; logp differences to per-item."""
    instructions = [f"{SEED_INSTRUCTIONS[k % 12]} ({k})" for k in range(CRITIC_PROMPTS)]
    prompts = [instruction_critic_prompt(i) for i in instructions]
    model, tok = loaded.model, loaded.tokenizer
    runs = {"per_item": lambda: score_ab_plain(model, tok, prompts, batch_size=1),
            "batched": lambda: score_ab_plain(model, tok, prompts, batch_size=16),
            "prefix": lambda: score_ab(model, tok, prompts, batch_size=16)}
    found: dict[str, Any] = {}
    results = {}
    for name, run in runs.items():
        run()  # warm-up
        seconds, results[name] = _timed(run)
        found[f"{name}_fps"] = len(prompts) / seconds
    for name in ("batched", "prefix"):
        pairs = list(zip(results["per_item"], results[name], strict=True))
        found[f"{name}_max_logp_diff"] = max(max(abs(a.logp_a - b.logp_a), abs(a.logp_b - b.logp_b)) for a, b in pairs)
        found[f"{name}_label_flips"] = sum(a.label != b.label for a, b in pairs)
    return found


def bench_sft(root: Path, folder: Path, device: str) -> dict[str, Any]:
    """LoRA SFT tokens/s and peak memory, with and without checkpointing, and QLoRA nf4 where it runs."""
    from phasegate.pipeline.__main__ import main as run_phase

    words = ["red", "blue", "green", "apple", "water", "cold", "river", "stone"]
    rows = [{"instruction": f"Describe {words[k % 8]} and {words[(3 * k) % 8]} briefly.",
             "response": " ".join(words[(k + j) % 8] for j in range(20 + k % 40)) + "."} for k in range(96)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    variants = {"ckpt_off": ({"gradient_checkpointing": False}, "none"),
                "ckpt_on": ({"gradient_checkpointing": True}, "none")}
    if device == "cuda" and _imports("bitsandbytes"):
        variants["nf4_ckpt_on"] = ({"gradient_checkpointing": True}, "nf4")
    found: dict[str, Any] = {}
    for name, (params, quantization) in variants.items():
        artifacts = root / "run" / "artifacts" / name
        context = {"phase_id": name, "kind": "sft", "run_dir": str(root / "run"), "session_dir": str(root),
                   "artifacts_dir": str(artifacts), "params": {**SFT, **params}, "seed": 1,
                   "model": {"path": str(folder), "quantization": quantization, "device": device}}
        path = root / f"{name}.json"
        path.write_text(json.dumps(context))
        if run_phase(["sft", "--context", str(path)]) != 0:
            found[name] = "failed (see the phase's output above)"
            continue
        metrics = json.loads((artifacts / "sft_metrics.json").read_text())
        found[name] = {"tokens_per_s": metrics["tokens_per_s"], "peak_memory_mb": metrics["peak_memory_mb"],
                       "peak_memory_source": metrics["peak_memory_source"]}
    return found


def _imports(module: str) -> bool:
    """Whether `module` imports here (bitsandbytes can be installed and still fail to load)."""
    try:
        __import__(module)
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return False
    return True


OOM_CHILD = ("import torch\nblocks = []\nwhile True:\n"
             "    blocks.append(torch.empty(2**30, dtype=torch.uint8, device='cuda'))\n")


def bench_oom(root: Path) -> dict[str, Any] | str:
    """A session whose one phase allocates GPU memory until CUDA fails: phasegate's exit code and trigger."""
    if not torch.cuda.is_available():
        return "not measured: needs CUDA"
    import yaml

    (root / "oom.py").write_text(OOM_CHILD)
    (root / "oom.toml").write_text(f'[session]\nname = "oom"\n\n[[phases]]\nid = "fill"\n'
                                   f'run = ["{sys.executable}", "oom.py"]\nretries = 2\n')
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != RUN_DIR_ENV}  # a session of its own
    done = subprocess.run([sys.executable, "-m", "phasegate", "run", str(root / "oom.toml"), "--headless",
                           "--run-dir", str(root / "oom-run")], capture_output=True, text=True, timeout=300, env=env)
    seconds = time.perf_counter() - started
    status = subprocess.run([sys.executable, "-m", "phasegate", "status", str(root / "oom-run"), "--json"],
                            capture_output=True, text=True, timeout=60)
    incident = json.loads(status.stdout).get("incident") if status.returncode == 0 else None
    front = yaml.safe_load(Path(incident).read_text().split("---")[1]) if incident else {}
    return {"exit_code": done.returncode, "trigger": front.get("trigger"), "seconds": seconds}


def environment(device: str, reader: NvmlReader) -> dict[str, str]:
    """What the figures came from: device, driver, torch and CUDA builds."""
    found = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()}
    if device == "cuda":
        found["device"] = torch.cuda.get_device_name(0)
        found["cuda"] = str(torch.version.cuda)
        found["driver"] = _driver(reader)
    else:
        found["device"] = f"CPU, {os.cpu_count()} cores"
    import transformers

    found["transformers"] = transformers.__version__
    return found


def _driver(reader: NvmlReader) -> str:
    """The NVIDIA driver version NVML reports, or why it cannot."""
    nvml = getattr(reader, "_nvml", None)
    if nvml is None:
        return reader.reason or "NVML unavailable"
    try:
        version = nvml.nvmlSystemGetDriverVersion()
    except Exception as error:  # noqa: BLE001 - NVML raises many error classes; each means "not reported"
        return f"not reported ({error})"
    return version.decode() if isinstance(version, bytes) else str(version)


def run(shape: str, device: str) -> dict[str, Any]:
    """Every measurement of one run, as JSON-ready values."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, NvmlWatch() as watch:
        root = Path(tmp)
        # One hash cache for every load of the run, as inside a session: 15 GB of weights are read once.
        os.environ[RUN_DIR_ENV] = str(root / "run")
        build_s, folder = _timed(lambda: build_model(root, shape, device))
        spec = ModelSpec(path=str(folder), device=device)
        load_s, loaded = _timed(lambda: load_clean(spec, checks=False))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        generation = bench_generation(loaded, shape)
        critic = bench_critic(loaded)
        torch_peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
        del loaded
        gc.collect()  # the SFT runs' peaks are then their own
        if device == "cuda":
            torch.cuda.empty_cache()
        sft = bench_sft(root, folder, device)
        oom = bench_oom(root)
        generation["vllm_tps"] = bench_vllm(spec, shape)  # last: vLLM keeps its share of the GPU until exit
    best = max(v for k, v in generation.items() if isinstance(v, float))
    minutes = 15000 / DEMO_KEPT_PER_CANDIDATE * (TOKENS_PER_CANDIDATE / best
                                                 + CRITIC_FORWARDS_PER_CANDIDATE / critic["prefix_fps"]) / 60
    return {"measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "shape": shape,
            "environment": environment(device, watch.reader), "build_s": build_s, "load_s": load_s, "generation": generation,
            "projected_minutes_15k_kept": minutes, "critic": critic, "sft": sft, "oom": oom,
            "nvml_peaks": watch.peaks or (watch.reason or "no reading"),
            "torch_max_memory_allocated_mb": torch_peak, "total_s": time.perf_counter() - started}


def _cell(value: Any, fmt: str = "{:.0f}") -> str:
    """One table cell: a number formatted, a reason as it is, a dash for a run that did not happen."""
    if value is None:
        return "—"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def _sft_cell(sft: dict[str, Any], name: str) -> str:
    """`tokens/s, peak MiB` of one SFT variant."""
    found = sft.get(name)
    if not isinstance(found, dict):
        return _cell(found or "not run here (needs CUDA and bitsandbytes)")
    return (f"{found['tokens_per_s']:.0f} tok/s, peak {found['peak_memory_mb']:.0f} MiB "
            f"({found['peak_memory_source']})")


def _rows(run: dict[str, Any] | None) -> list[str]:
    """The column of one run, in the order of ROW_NAMES."""
    if run is None:
        return ["not measured yet"] * len(ROW_NAMES)
    gen, critic, sft = run["generation"], run["critic"], run["sft"]
    env = run["environment"]
    saved: float | str = "— (a process's peak RSS is no per-run figure)"
    if all(isinstance(sft.get(k), dict) and sft[k]["peak_memory_source"].startswith("torch.cuda")
           for k in ("ckpt_off", "ckpt_on")):
        saved = (sft["ckpt_off"]["peak_memory_mb"] - sft["ckpt_on"]["peak_memory_mb"]) / 1024
    oom = run["oom"]
    nvml = run["nvml_peaks"]
    return [
        f"{env['device']}; driver {env.get('driver', '—')}, torch {env['torch']}, CUDA {env.get('cuda', '—')}, "
        f"transformers {env['transformers']}; {run['measured_at']}",
        f"{run['shape']}: built in {run['build_s']:.0f} s, loaded in {run['load_s']:.0f} s",
        *[_cell(gen[f"hf_batch{b}_tps"]) for b in BATCHES],
        _cell(gen["vllm_tps"]),
        _cell(run["projected_minutes_15k_kept"], "{:.1f}"),
        _cell(critic["per_item_fps"], "{:.1f}"),
        f"{critic['batched_fps']:.1f}; max logp diff {critic['batched_max_logp_diff']:.1e}, "
        f"{critic['batched_label_flips']} label flips",
        f"{critic['prefix_fps']:.1f}; max logp diff {critic['prefix_max_logp_diff']:.1e}, "
        f"{critic['prefix_label_flips']} label flips",
        _sft_cell(sft, "ckpt_off"),
        _sft_cell(sft, "ckpt_on"),
        _cell(saved, "{:.2f} GiB"),
        _sft_cell(sft, "nf4_ckpt_on"),
        (f"memory {nvml.get('mem_used_mb', 0):.0f} MiB, util {nvml.get('util_pct', 0):.0f} %, "
         f"power {nvml.get('power_w', 0):.0f} W" if isinstance(nvml, dict) else str(nvml)),
        _cell(run["torch_max_memory_allocated_mb"], "{:.0f} MiB") if run["torch_max_memory_allocated_mb"]
        else "— (no CUDA)",
        (f"exit {oom['exit_code']}, trigger {oom['trigger']}, {oom['seconds']:.0f} s" if isinstance(oom, dict)
         else str(oom)),
        f"{run['total_s']:.0f} s",
    ]


ROW_NAMES = [
    "device and versions", "model", *[f"generation, hf batch {b}: new tokens/s" for b in BATCHES],
    "generation, vLLM: new tokens/s", "projected minutes on this device for 15k kept rows (best engine, demo acceptance)",
    "critic, per item: forwards/s", "critic, batched (16)", "critic, batched + shared-prefix cache",
    "LoRA SFT, checkpointing off", "LoRA SFT, checkpointing on", "memory checkpointing saves",
    "QLoRA nf4 SFT, checkpointing on", "NVML peaks during the run", "torch max_memory_allocated (generation, critic)",
    "real CUDA OOM in a session phase", "whole run",
]


def render(figures: dict[str, Any]) -> str:
    """The GPU section: the GPU run and the CPU tiny-shape run side by side."""
    gpu, cpu = _rows(figures.get("gpu")), _rows(figures.get("cpu"))
    lines = [
        "## GPU: a 7B-shaped model on one accelerator (`make bench-gpu`)",
        "",
        "`benchmarks/gpu.py` through phasegate's own code paths: random weights in Qwen2.5-7B's shape (bf16) built "
        "on the GPU, the tests' offline tokenizer, no download; beside it the same code on a tiny shape on the "
        "CPU. Generation: 128 pilot response prompts, greedy, "
        f"{NEW_TOKENS['7b']} new tokens on the GPU ({NEW_TOKENS['tiny']} on the CPU); critic: {CRITIC_PROMPTS} "
        "instruction-critic prompts; SFT: LoRA r=16, batch 8, max_length 256, 8 steps.",
        "",
        "| measurement | GPU, 7B shape | CPU, tiny shape |",
        "|---|---|---|",
        *[f"| {name} | {g} | {c} |" for name, g, c in zip(ROW_NAMES, gpu, cpu, strict=True)],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["auto", *SHAPES], default="auto",
                        help="auto: 7b on CUDA, tiny on the CPU")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where gpu-figures.json and GPU.md are written")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = args.shape if args.shape != "auto" else ("7b" if device == "cuda" else "tiny")
    store = args.out_dir / "gpu-figures.json"
    figures = json.loads(store.read_text()) if store.exists() else {}
    figures["gpu" if device == "cuda" else "cpu"] = run(shape, device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(figures, indent=2) + "\n")
    text = render(figures)
    (args.out_dir / "GPU.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

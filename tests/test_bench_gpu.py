"""benchmarks/gpu.py runs end to end on the CPU's tiny shape and renders its column beside the GPU's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(out_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--shape", "tiny", "--out-dir",
                           str(out_dir)], capture_output=True, text=True, timeout=300)


def test_the_cpu_run_measures_every_figure_and_leaves_the_gpu_column_open(tmp_path: Path) -> None:
    done = run_bench(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    cpu = json.loads((tmp_path / "gpu-figures.json").read_text())["cpu"]
    assert all(cpu["generation"][f"hf_batch{b}_tps"] > 0 for b in (16, 64, 128))
    assert cpu["critic"]["batched_label_flips"] == 0 and cpu["critic"]["prefix_label_flips"] == 0
    assert cpu["critic"]["prefix_max_logp_diff"] < 1e-4  # fp32 on the CPU: the cache changes nothing
    assert cpu["projected_minutes_15k_kept"] > 0
    assert {k: v["tokens_per_s"] > 0 for k, v in cpu["sft"].items()} == {"ckpt_off": True, "ckpt_on": True}
    assert cpu["oom"] == "not measured: needs CUDA" and "NVML" in cpu["nvml_peaks"]
    text = (tmp_path / "GPU.md").read_text()
    assert "| generation, hf batch 128: new tokens/s | not measured yet |" in text
    assert text.strip() in done.stdout


def test_a_run_keeps_the_other_devices_figures(tmp_path: Path) -> None:
    assert run_bench(tmp_path).returncode == 0
    store = tmp_path / "gpu-figures.json"
    figures = json.loads(store.read_text())
    gpu = {**figures["cpu"], "environment": {**figures["cpu"]["environment"], "device": "NVIDIA H200"}}
    store.write_text(json.dumps({"gpu": gpu}))
    assert run_bench(tmp_path).returncode == 0
    figures = json.loads(store.read_text())
    assert figures["gpu"]["environment"]["device"] == "NVIDIA H200" and "cpu" in figures
    assert "not measured yet" not in (tmp_path / "GPU.md").read_text()


def test_the_oom_session_reads_its_stop_back(tmp_path: Path, monkeypatch) -> None:
    # The real child fills a GPU; here it raises torch's own CUDA OOM error: the session plumbing is the same.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu

    monkeypatch.setattr(gpu, "OOM_CHILD", "import torch\nraise torch.OutOfMemoryError('CUDA out of memory. "
                        "Tried to allocate 1.00 GiB (simulated)')\n")
    monkeypatch.setattr(gpu.torch.cuda, "is_available", lambda: True)
    found = gpu.bench_oom(tmp_path)
    assert found["exit_code"] == 3 and found["trigger"] == "oom", found

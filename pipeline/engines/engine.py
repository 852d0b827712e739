"""The engine seam: what the pilot and the scale shards call to generate and to judge.

Both engines take the same prompts, encoded by the same CleanTokenizer (BOS per the model's
convention, no chat template), and hand their raw new token ids to the same `finish_row`, so the
stop strings, the EOS handling and the special-token checks on outputs are one code path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from phasegate.pipeline.generation.critic import Critique, score_ab
from phasegate.pipeline.generation.generate import (
    GenerationResult,
    GenerationSettings,
    generate_texts,
)

if TYPE_CHECKING:
    from phasegate.pipeline.model.loader import LoadedModel
    from phasegate.pipeline.model.spec import ModelSpec
    from phasegate.pipeline.tokenizer import CleanTokenizer


class Engine(Protocol):
    """Generation and single-token A/B scoring over one loaded model."""

    name: str
    tok: CleanTokenizer

    def generate(
        self, prompts: Sequence[str], settings: GenerationSettings
    ) -> list[GenerationResult]:
        """Continue every prompt; results in the prompts' order."""
        ...

    def score_ab(
        self, prompts: Sequence[str], *, batch_size: int, min_margin: float
    ) -> list[Critique]:
        """Judge every prompt by logp(A) - logp(B) as its next token; in the prompts' order."""
        ...

    def identity(self) -> dict[str, str]:
        """What of the engine shapes the rows, for fingerprints and provenance ({} for the default hf)."""
        ...


@dataclass
class HfEngine:
    """transformers `generate` over length-bucketed, left-padded batches; the critic's prefix cache."""

    model: Any
    tok: CleanTokenizer
    cache: str = "dynamic"
    name: str = "hf"

    def generate(
        self, prompts: Sequence[str], settings: GenerationSettings
    ) -> list[GenerationResult]:
        """Continue every prompt with the engine's KV cache kind."""
        return generate_texts(self.model, self.tok, prompts, dataclasses.replace(settings, cache=self.cache))

    def score_ab(
        self, prompts: Sequence[str], *, batch_size: int, min_margin: float
    ) -> list[Critique]:
        """The batched critic, a shared rubric computed once."""
        return score_ab(self.model, self.tok, prompts, batch_size=batch_size, min_margin=min_margin)

    def identity(self) -> dict[str, str]:
        """{} with the dynamic cache (work made before engines existed stays valid), else the cache."""
        return {} if self.cache == "dynamic" else {"engine": "hf", "hf_cache": self.cache}


def engine_record(engine: Engine) -> dict[str, str]:
    """The engine as provenance records it: its name and identity."""
    return {"name": engine.name, **engine.identity()}


def require_engine(spec: ModelSpec) -> None:
    """Refuse an engine that cannot run here, before minutes of model loading (PhaseInputError, exit 2)."""
    if spec.engine == "vllm":
        from phasegate.pipeline.engines.vllm_engine import require_vllm

        require_vllm(spec)


def open_engine(loaded: LoadedModel, spec: ModelSpec) -> Engine:
    """The engine `[model] engine` names, over the model `loaded` was checked on.

    vLLM loads the same folder itself; the transformers copy (used by the contamination checks) is
    released first, so the two never share the GPU's memory.
    """
    if spec.engine == "hf":
        return HfEngine(loaded.model, loaded.tokenizer, cache=spec.hf_cache)
    from phasegate.pipeline.engines.vllm_engine import VllmEngine

    return VllmEngine.start(loaded.release_model(), spec)

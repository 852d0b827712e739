"""The only way a model is loaded: no chat template, no special token but the model's own BOS, checked, with provenance."""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from phasegate.floor.events import reporter
from phasegate.pipeline.errors import ContaminationError, CudaRequiredError, ModelLoadError
from phasegate.pipeline.files import hash_files, sha256_file
from phasegate.pipeline.model.contamination import CheckResult, run_checks
from phasegate.pipeline.model.spec import ModelSpec
from phasegate.pipeline.tokenizer import CleanTokenizer
from phasegate.pipeline.versions import (
    LIBRARY_FLOORS,
    cuda_status,
    package_version,
    version_floor_problems,
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
# What from_pretrained raises when a library is too old, too new or missing a piece (an unknown keyword, an
# unknown model type, a missing kernel): a model-load error naming the versions, never a traceback.
_LIBRARY_ERRORS = (OSError, ValueError, TypeError, ImportError)
_LOAD_LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes")
_TOKENIZER_PREFIXES = (
    "tokenizer",
    "vocab",
    "merges",
    "special_tokens_map",
    "added_tokens",
    "chat_template",
)


def require_cuda_for_4bit_training(spec: ModelSpec) -> None:
    """Raise unless 4-bit (nf4) training would run on CUDA; on CPU it silently learns nothing."""
    if spec.quantization == "nf4" and spec.resolved_device() != "cuda":
        raise CudaRequiredError(
            "quantization = 'nf4' (QLoRA) training needs a CUDA GPU: on CPU bitsandbytes loads "
            "the 4-bit model, but its LoRA parameters get zero gradients without any error. "
            "Run this phase on a GPU machine, or set [model] quantization = 'none' to train "
            "in full precision on CPU."
        )


@dataclass(frozen=True)
class Provenance:
    """What exactly was loaded, and what the contamination checks found."""

    model_path: str
    resolved_path: str
    config_sha256: str | None
    weights_sha256: str | None
    weight_files: dict[str, str]
    tokenizer_sha256: str | None
    dtype: str
    quantization: str
    device: str
    chat_template_removed: bool
    pad_set_to_eos: bool
    bos_added: bool  # every whole sequence starts with BOS: the tokenizer's own default does so
    bos_token: str | None  # the BOS token's text when bos_added, else None
    versions: dict[str, str]
    checks: tuple[CheckResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The provenance as JSON-ready values."""
        return asdict(self)


@dataclass
class LoadedModel:
    """A model in eval mode, its clean tokenizer, and its provenance."""

    model: Any
    tokenizer: CleanTokenizer
    provenance: Provenance

    def release_model(self) -> LoadedModel:
        """Drop the reference to the transformers model (another engine takes over); returns self."""
        self.model = None
        return self

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        """The contamination checks that did not pass."""
        return tuple(c for c in self.provenance.checks if not c.passed)


def resolve_model_dir(path: str, *, base: Path | None = None) -> Path:
    """The local folder holding the model: `path` itself, or a hub id's cached snapshot."""
    local = Path(path).expanduser()
    if not local.is_absolute() and base is not None and (base / local).exists():
        local = base / local
    if local.exists():
        if not (local.is_dir() and (local / "config.json").is_file()):
            raise ModelLoadError(
                f"{local} is not a model folder (no config.json in it); set [model] path to the "
                "folder that save_pretrained wrote"
            )
        return local.resolve()
    if not _HUB_ID.match(path):
        raise ModelLoadError(
            f"model path {str(local)!r} does not exist; set [model] path to a local model folder "
            "or to a hub id such as 'Qwen/Qwen2.5-0.5B'"
        )
    return _cached_snapshot(path)


def _cached_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of a hub id; never downloads (sessions run offline-safe)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as error:  # huggingface_hub raises several kinds for "not there"
        raise ModelLoadError(
            f"model {repo_id!r} is neither a local folder nor in the Hugging Face cache "
            f"({type(error).__name__}); download it first (`hf download {repo_id}`) or set "
            "[model] path to a local folder"
        ) from error


def _quantization_config(spec: ModelSpec, dtype: torch.dtype) -> Any:
    """A BitsAndBytesConfig for nf4/int8, or None."""
    if spec.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401  (imported only to fail early with a clear message)
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise ModelLoadError(
            f"quantization = {spec.quantization!r} needs bitsandbytes; "
            "install it with `pip install 'phasegate[quant]'`"
        ) from error
    if spec.quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )


def _load_model(folder: Path, spec: ModelSpec, device: str, dtype: torch.dtype) -> Any:
    """The causal LM from `folder` on `device`, in eval mode, with neutral generation defaults."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    quant = _quantization_config(spec, dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except _LIBRARY_ERRORS as error:
        raise ModelLoadError(
            f"cannot load a causal LM from {folder} ({library_versions()}): "
            f"{type(error).__name__}: {error}"
        ) from error
    cfg = model.config
    # A checkpoint's own sampling defaults (e.g. temperature 0.7) must not leak into the pipeline.
    model.generation_config = GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id
    )
    return model.eval()


def _load_tokenizer(folder: Path, spec: ModelSpec) -> tuple[CleanTokenizer, bool]:
    """The clean tokenizer of `folder`, and whether a chat template had to be removed."""
    from transformers import AutoTokenizer

    try:
        raw = AutoTokenizer.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
    except _LIBRARY_ERRORS as error:
        raise ModelLoadError(
            f"cannot load a tokenizer from {folder} ({library_versions()}): "
            f"{type(error).__name__}: {error}; the folder needs the files that "
            "tokenizer.save_pretrained writes"
        ) from error
    had_template = getattr(raw, "chat_template", None) is not None
    return CleanTokenizer(raw), had_template


def library_versions() -> str:
    """The installed versions of the libraries a load goes through, for error messages."""
    return ", ".join(f"{name} {package_version(name) or 'not installed'}" for name in _LOAD_LIBRARIES)


def require_library_floors() -> None:
    """Raise ModelLoadError when transformers, peft or accelerate is older than the code needs."""
    problems = version_floor_problems()
    if problems:
        upgrade = " ".join(f"'{name}>={LIBRARY_FLOORS[name]}'" for name in problems)
        raise ModelLoadError(
            "; ".join(problems.values()) + f"; upgrade with `pip install -U {upgrade}` (torch can stay as it is)"
        )


def warn_if_cpu_fallback(spec: ModelSpec, device: str) -> None:
    """`device = "auto"` that found no usable CUDA: say so in the phase log and the journal (log + metric)."""
    if spec.device != "auto" or device != "cpu":
        return
    message = f"running on CPU: no usable CUDA ({cuda_status()[1]}); set [model] device = 'cpu' to make it explicit"
    print(f"warning: {message}", file=sys.stderr, flush=True)
    reporter().log(f"warning: {message}")
    reporter().metric("cpu_fallback", 1)


def _versions() -> dict[str, str]:
    """Versions of the libraries that shape what the model computes."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def load_clean(
    spec: ModelSpec, *, base: Path | None = None, checks: bool = True, strict: bool = True
) -> LoadedModel:
    """Load the spec's model in completion mode, run the contamination checks, record provenance.

    With `strict`, a failed check raises ContaminationError carrying the provenance as evidence.
    """
    folder = resolve_model_dir(spec.path, base=base)
    require_library_floors()
    device = spec.resolved_device()
    dtype = spec.resolved_dtype(device)
    warn_if_cpu_fallback(spec, device)
    tok, had_template = _load_tokenizer(folder, spec)
    model = _load_model(folder, spec, device, dtype)
    results = run_checks(model, tok, sentinel_max=spec.sentinel_max) if checks else ()
    weights = hash_files([p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES], folder)
    tokenizer_files = [p for p in folder.iterdir() if p.name.startswith(_TOKENIZER_PREFIXES)]
    provenance = Provenance(
        model_path=spec.path,
        resolved_path=str(folder),
        config_sha256=sha256_file(folder / "config.json"),
        weights_sha256=weights["sha256"],
        weight_files=weights["files"],
        tokenizer_sha256=hash_files(tokenizer_files, folder)["sha256"],
        dtype=str(dtype).removeprefix("torch."),
        quantization=spec.quantization,
        device=device,
        chat_template_removed=had_template,
        pad_set_to_eos=tok.pad_set_to_eos,
        bos_added=tok.adds_bos,
        bos_token=tok.bos_token,
        versions=_versions(),
        checks=results,
    )
    loaded = LoadedModel(model=model, tokenizer=tok, provenance=provenance)
    if strict and loaded.failed_checks:
        names = ", ".join(c.name for c in loaded.failed_checks)
        raise ContaminationError(
            f"contamination check(s) failed for {spec.path}: {names}; "
            + "; ".join(c.summary for c in loaded.failed_checks),
            evidence=provenance.to_dict(),
        )
    return loaded

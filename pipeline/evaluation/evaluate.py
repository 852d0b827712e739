"""The `evaluate` phase: paired, greedy evaluation of the base model and base + adapter.

Both models answer every test instruction greedily (same prompts, same settings; the system
prompt the adapter was trained with, if any, is used for both). The pair critic of the clean base
model (adapter removed) judges every answer; an answer succeeds when the critic chooses A (and,
with `require_confident`, by at least `min_margin`) and it is not empty. The paired outcomes give
per-type and overall rates with Wilson intervals, discordant counts b (base only) and c (adapter
only), the exact McNemar p, Cohen's h (adapter vs base) and Benjamini-Hochberg decisions across
types. The `stat` gate decides from eval_summary.json.

Outputs: eval_rows.jsonl, eval_summary.json, provenance.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from phasegate.gates.paired_stats import (
    benjamini_hochberg,
    bh_adjusted,
    cohens_h,
    mcnemar_exact,
    wilson_ci,
)
from phasegate.pipeline.context import PhaseContext
from phasegate.pipeline.errors import PhaseInputError
from phasegate.pipeline.files import atomic_write_jsonl, numbered_jsonl, sha256_file
from phasegate.pipeline.generation.critic import DEFAULT_MIN_MARGIN, score_ab
from phasegate.pipeline.generation.generate import GenerationSettings, generate_texts
from phasegate.pipeline.generation.prompts import RESPONSE_STOPS, pair_critic_prompt
from phasegate.pipeline.model.modeldir import ModelDirError, ModelDirKind, describe_model_dir
from phasegate.pipeline.phase_io import parse_params, resolve_path, upstream_file, write_output
from phasegate.pipeline.training.data import prompt_text


class EvaluateParams(BaseModel):
    """The `evaluate` phase's `[phases.with]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    testset: str | None = Field(None, description="Test set JSONL ({id, type, instruction}); "
                                "default: the latest earlier testset phase's testset.jsonl.")
    adapter: str | None = Field(None, description="LoRA adapter folder (or a full fine-tuned "
                                "model folder); default: the latest earlier sft phase's adapter/.")
    max_new_tokens: int = Field(100, ge=1, description="Token limit of one answer.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation and critic batch.")
    stop: list[str] = Field(list(RESPONSE_STOPS), description="Stop strings that end an answer.")
    min_margin: float = Field(DEFAULT_MIN_MARGIN, ge=0, description="|logp(A) - logp(B)| of a "
                              "confident critique.")
    require_confident: bool = Field(False, description="Count only confident A critiques as "
                                    "success.")
    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level of the McNemar "
                         "decisions and the Benjamini-Hochberg false discovery rate.")
    ci_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the Wilson "
                            "intervals.")


def read_testset(path: Path) -> list[dict[str, Any]]:
    """Test rows with string id, type and instruction; errors name the file and line."""
    rows = []
    for number, row in numbered_jsonl(path, "test set"):
        if not all(isinstance(row.get(k), str) for k in ("id", "type", "instruction")):
            raise PhaseInputError(f"{path} line {number} needs string id, type and instruction")
        rows.append(row)
    if not rows:
        raise PhaseInputError(f"test set {path} is empty")
    return rows


def _inputs(ctx: PhaseContext, params: EvaluateParams) -> tuple[Path, Path, ModelDirKind]:
    """The test set file and the adapter (or model) folder, checked."""
    testset = (resolve_path(ctx, params.testset) if params.testset
               else upstream_file(ctx, ("testset",), {"testset": "testset.jsonl"}))
    adapter = (resolve_path(ctx, params.adapter) if params.adapter
               else upstream_file(ctx, ("sft",), {"sft": "adapter"}))
    try:
        kind = describe_model_dir(adapter)
    except ModelDirError as error:
        raise PhaseInputError(f"evaluate: {error}") from error
    return testset, adapter, kind


def _training_provenance(adapter: Path) -> dict[str, Any]:
    """The adapter's training provenance (empty for adapters trained elsewhere)."""
    path = adapter / "training_provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_base(adapter: Path, trained: dict[str, Any], loaded: Any) -> None:
    """Refuse an adapter trained on other base weights than the [model] loaded here."""
    base = trained.get("base_model") or {}
    for key in ("config_sha256", "weights_sha256"):
        want, have = base.get(key), getattr(loaded.provenance, key)
        if want is not None and want != have:
            raise PhaseInputError(f"adapter {adapter} was trained on a base model with {key} "
                                  f"{want[:12]}..., but [model] has {str(have)[:12]}...; "
                                  "evaluate it against the base it was trained on")


def _answer(model: Any, tok: Any, prompts: list[str], settings: GenerationSettings) -> list[dict]:
    """Greedy answers as JSON-ready dicts (text and how generation ended)."""
    found = generate_texts(model, tok, prompts, settings)
    return [{k: v for k, v in r.to_dict().items() if k != "prompt"} for r in found]


def _adapter_answers(loaded: Any, adapter: Path, kind: ModelDirKind, prompts: list[str],
                     settings: GenerationSettings, ctx: PhaseContext) -> tuple[list[dict], Any]:
    """The adapted model's answers, and the base model to judge with afterwards."""
    if kind is ModelDirKind.ADAPTER:
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(loaded.model, str(adapter)).eval()
        answers = _answer(tuned, loaded.tokenizer, prompts, settings)
        return answers, tuned.unload()  # removes the LoRA layers: the clean base again
    from phasegate.pipeline.model.loader import load_clean

    spec = ctx.require_model().model_copy(update={"path": str(adapter)})
    # A fine-tuned model follows instructions by design: the sentinel check does not apply.
    full = load_clean(spec, checks=False)
    answers = _answer(full.model, full.tokenizer, prompts, settings)
    del full
    return answers, loaded.model


def _judge(model: Any, tok: Any, rows: list[dict], answers: list[dict],
           params: EvaluateParams) -> list[dict]:
    """Each answer with the pair critic's judgement and whether it counts as a success."""
    prompts = [pair_critic_prompt(r["instruction"], a["text"]) for r, a in zip(rows, answers,
                                                                                strict=True)]
    found = score_ab(model, tok, prompts, batch_size=params.batch_size,
                     min_margin=params.min_margin)
    judged = []
    for answer, critique in zip(answers, found, strict=True):
        ok = critique.accepted and bool(answer["text"].strip())
        ok = ok and (critique.confident or not params.require_confident)
        judged.append({"response": answer["text"], "generation": answer,
                       "critique": critique.to_dict(), "success": ok})
    return judged


def paired_block(pairs: list[tuple[bool, bool]], ci_alpha: float) -> dict[str, Any]:
    """Rates, Wilson intervals, discordant counts, McNemar p and Cohen's h of (base, adapter) pairs."""
    n = len(pairs)
    k_base = sum(base for base, _ in pairs)
    k_adapter = sum(tuned for _, tuned in pairs)
    b = sum(base and not tuned for base, tuned in pairs)
    c = sum(tuned and not base for base, tuned in pairs)

    def arm(k: int) -> dict[str, Any]:
        return {"successes": k, "rate": k / n if n else None,
                "wilson_ci": list(wilson_ci(k, n, alpha=ci_alpha))}

    rate_b, rate_a = (k_base / n, k_adapter / n) if n else (0.0, 0.0)
    return {"n": n, "base": arm(k_base), "adapter": arm(k_adapter),
            "both": sum(x and y for x, y in pairs), "neither": sum(not (x or y) for x, y in pairs),
            "b": b, "c": c, "mcnemar_p": mcnemar_exact(b, c), "cohens_h": cohens_h(rate_a, rate_b)}


def summarize(outcomes: list[dict[str, Any]], alpha: float, ci_level: float) -> dict[str, Any]:
    """eval_summary.json: overall and per-type blocks, with BH decisions across types."""
    ci_alpha = round(1 - ci_level, 12)  # in floats 1 - 0.95 is 0.050000000000000044, not 0.05
    pairs = [(o["base"], o["adapter"]) for o in outcomes]
    overall = paired_block(pairs, ci_alpha)
    overall["significant"] = overall["mcnemar_p"] < alpha
    types = sorted({o["type"] for o in outcomes})
    per_type = {t: paired_block([(o["base"], o["adapter"]) for o in outcomes if o["type"] == t],
                                ci_alpha) for t in types}
    pvalues = [per_type[t]["mcnemar_p"] for t in types]
    for t, reject, adjusted in zip(types, benjamini_hochberg(pvalues, alpha), bh_adjusted(pvalues),
                                   strict=True):
        per_type[t].update(bh_reject=reject, bh_adjusted_p=adjusted)
    return {
        "alpha": alpha, "ci_level": ci_level, "overall": overall, "per_type": per_type,
        "bh": {"family": "per_type McNemar p-values", "alpha": alpha,
               "rejected": [t for t in types if per_type[t]["bh_reject"]]},
        "conventions": {"b": "base succeeded, adapter failed", "c": "adapter succeeded, base "
                        "failed", "cohens_h": "2 asin(sqrt(adapter rate)) - 2 asin(sqrt(base "
                        "rate)); positive = adapter better"},
    }


def evaluate(ctx: PhaseContext) -> int:
    """Answer the test set with both models, judge, and write rows and the summary."""
    from phasegate.pipeline.model.loader import load_clean

    params = parse_params(ctx, EvaluateParams)
    testset, adapter, kind = _inputs(ctx, params)
    rows = read_testset(testset)
    loaded = load_clean(ctx.require_model(), base=ctx.model_base)
    trained = _training_provenance(adapter)
    _check_base(adapter, trained, loaded)
    prov = write_output(ctx, "provenance.json", loaded.provenance.to_dict())
    system = trained.get("system_prompt")
    prompts = [prompt_text(r["instruction"], system) for r in rows]
    settings = GenerationSettings(max_new_tokens=params.max_new_tokens, temperature=0.0,
                                  stop=tuple(params.stop), batch_size=params.batch_size)
    tok = loaded.tokenizer
    ctx.reporter.progress(0, 4, step="base answers")
    base_answers = _answer(loaded.model, tok, prompts, settings)
    ctx.reporter.progress(1, 4, step="adapter answers")
    tuned_answers, judge = _adapter_answers(loaded, adapter, kind, prompts, settings, ctx)
    ctx.reporter.progress(2, 4, step="critic")
    base = _judge(judge, tok, rows, base_answers, params)
    tuned = _judge(judge, tok, rows, tuned_answers, params)
    ctx.reporter.progress(3, 4, step="statistics")
    out = [{"id": r["id"], "type": r["type"], "instruction": r["instruction"], "base": x,
            "adapter": y} for r, x, y in zip(rows, base, tuned, strict=True)]
    ctx.reporter.artifact(atomic_write_jsonl(ctx.artifacts_dir / "eval_rows.jsonl", out))
    summary = summarize([{"type": o["type"], "base": o["base"]["success"],
                          "adapter": o["adapter"]["success"]} for o in out],
                        params.alpha, params.ci_level)
    summary.update(
        testset={"path": str(testset), "sha256": sha256_file(testset)},
        adapter={"path": str(adapter), "kind": kind.value},
        generation_params=settings.to_dict(), system_prompt=system,
        judge="pair critic of the base model (adapter removed)",
        provenance_ref={"path": prov.name, "sha256": sha256_file(prov)},
    )
    write_output(ctx, "eval_summary.json", summary)
    overall = summary["overall"]
    for name, value in (("base_rate", overall["base"]["rate"]),
                        ("adapter_rate", overall["adapter"]["rate"]),
                        ("mcnemar_p", overall["mcnemar_p"]), ("cohens_h", overall["cohens_h"])):
        ctx.reporter.metric(name, value)
    ctx.reporter.progress(4, 4, step="done")
    return 0

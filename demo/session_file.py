"""The demo session's text: the session file `phasegate demo` writes and the sample scripts its
preflight policy gate checks. Every gate uses the reference workflow's thresholds, unchanged."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phasegate.floor.errors import InvalidInput, RunDirError

# The phase each fault hits in the full session (None: wherever it happens).
FAULT_PHASES: dict[str, str | None] = {"oom": "sft", "budget": None, "contamination": "load",
                                       "reviewer-hang": "pilot", "stall": "sft"}
REFERENCE_QC = ('["runaway_rate < 0.05", "token_limit_rate < 0.10", "leakage_count == 0", '
                '"leakage_rate < 0.02", "median_tokens < 40", "instruction_acceptance >= 0.5", '
                '"pair_acceptance >= 0.5"]')

HEADER = """\
# The phasegate demo session, written by `phasegate demo`{fault_note}.
# The model is a tiny Llama-shaped model trained once on this machine (about a minute on two CPU
# cores) on a bundled corpus; the gates use the reference workflow's thresholds, unchanged.
[session]
name = "demo"
description = "The reference workflow on a tiny model trained on this machine"
budget_usd = {budget_usd}
gpu_hourly_usd = {gpu_hourly_usd}
seed = 7
{session_extra}
[model]
path = {model}
# The tiny model runs on the CPU on purpose; the GPU price above only shows budget burn. A session with a
# GPU price and `device = "auto"` is a GPU session: without usable CUDA its first model phase stops it.
device = "cpu"
sentinel_max = 0.7

[reviewers.local]
command = {reviewer}
timeout_s = {reviewer_timeout}
retries = 0
"""

PHASES: dict[str, str] = {
    "versions": """
[[phases]]
id = "versions"
kind = "versions"

# Preflight: every script that loads the base model goes through the canonical loader.
[[phases.pre_gates]]
id = "migration"
kind = "policy"
root = "scripts"
include = ["**/*.py"]
exclude = ["archived/**"]
recheck = "every_phase"

[[phases.pre_gates.rules]]
kind = "no_attribute_assign"
attribute = "chat_template"
value = "None"
allow = ["utils/clean_model_loader.py"]
message = "disables the chat template by hand; load through CleanModelLoader"

[[phases.pre_gates.rules]]
kind = "no_call_keyword"
keyword = "add_special_tokens"
value = "False"
allow = ["utils/clean_model_loader.py"]
message = "tokenizes by hand; use CleanModelLoader.tokenize"

[[phases.pre_gates.rules]]
kind = "must_import"
files = ["evaluate_*.py", "generate_*.py"]
module = "utils.clean_model_loader"
name = "CleanModelLoader"
min_files = 2

[[phases.pre_gates.rules]]
kind = "no_call"
function = "from_pretrained"
receivers = ["AutoModelForCausalLM", "AutoModel", "AutoTokenizer"]
allow = ["utils/clean_model_loader.py"]
message = "loads the base model directly; use CleanModelLoader"
""",
    "load": """
[[phases]]
id = "load"
kind = "load_check"
""",
    "baseline": """
[[phases]]
id = "baseline"
kind = "baseline_eval"
""",
    "pilot": f"""
[[phases]]
id = "pilot"
kind = "generate"
retries = 1
tunable = ["temperature"]

[phases.with]
count = 48
batch_size = 16
temperature = 0.7
top_p = 0.9
max_new_tokens = 100

[[phases.gates]]
id = "pilot-rows"
kind = "artifact"
jsonl = {{ path = "{{artifacts}}/pilot_data.jsonl", schema = "pilot_row", min_rows = 10 }}

[[phases.gates]]
id = "pilot-qc"
kind = "threshold"
file = "{{artifacts}}/qc_summary.json"
rules = {REFERENCE_QC}

[[phases.gates]]
id = "pilot-review"
kind = "review"
reviewer = "local"
question = "Is this pilot good enough to scale up?"
qc_file = "{{artifacts}}/qc_summary.json"
sample_file = "{{artifacts}}/pilot_data.jsonl"
""",
    "scale": f"""
[[phases]]
id = "scale"
kind = "scale"

[phases.with]
count = 128
num_shards = 2
workers = 2

# Refuses to start when the projection (the pilot's measured rate, model load apart) costs more than is left.
[[phases.pre_gates]]
id = "scale-budget"
kind = "budget"

[[phases.gates]]
id = "scale-qc"
kind = "threshold"
file = "{{artifacts}}/qc_summary.json"
rules = {REFERENCE_QC}
""",
    "testset": """
[[phases]]
id = "testset"
kind = "testset"

[phases.with]
per_type = 12

[[phases.gates]]
id = "no-overlap"
kind = "threshold"
file = "{artifacts}/overlap_report.json"
rules = ["overlap_count == 0"]
""",
    "sft": """
[[phases]]
id = "sft"
kind = "sft"

[phases.with]
epochs = 3
max_steps = 32
batch_size = 8
learning_rate = 1e-2
lora_r = 8
lora_alpha = 16
max_length = 128
gradient_checkpointing = false
save_every = 16
log_every = 4

[[phases.gates]]
id = "adapter"
kind = "artifact"
files = ["{artifacts}/adapter/adapter_model.safetensors", "{artifacts}/sft_metrics.json"]
""",
    "evaluate": """
[[phases]]
id = "evaluate"
kind = "evaluate"

[phases.with]
max_new_tokens = 64
alpha = 0.01

# The reference's bar: the adapter beats the base model, exact McNemar p < 0.01.
[[phases.gates]]
id = "adapter-better"
kind = "stat"
alpha = 0.01
""",
}

# A small repository for the preflight policy gate (the examples/stage1/scripts shapes).
_LOADER = '''"""The canonical loader: the one place allowed to disable chat templates and special tokens."""
from transformers import AutoModelForCausalLM, AutoTokenizer


class CleanModelLoader:
    def __init__(self, model_name):
        self.model_name = model_name

    def load(self):
        tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        tokenizer.chat_template = None
        return AutoModelForCausalLM.from_pretrained(self.model_name).eval(), tokenizer

    def tokenize(self, tokenizer, prompt):
        return tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
'''
_USER = '''"""{what} through CleanModelLoader: completion prompts, never a chat template."""
from utils.clean_model_loader import CleanModelLoader


def complete(model_name, prompt):
    loader = CleanModelLoader(model_name)
    model, tokenizer = loader.load()
    inputs = loader.tokenize(tokenizer, prompt)
    return tokenizer.decode(model.generate(**inputs, max_new_tokens=100)[0])
'''
SCRIPTS: dict[str, str] = {
    "utils/__init__.py": "",
    "utils/clean_model_loader.py": _LOADER,
    "generate_pilot.py": _USER.format(what="Pilot generation"),
    "evaluate_baseline.py": _USER.format(what="Baseline evaluation"),
    # Kept for history: it loads by hand, and the policy's `exclude` leaves archived/ out.
    "archived/old_eval.py": '''from transformers import AutoTokenizer


def load(model_name):
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    tokenizer.chat_template = None
    return tokenizer
''',
}


def session_text(model_dir: Path, fault: str | None = None, *, phases: Sequence[str] | None = None,
                 fault_phase: str | None = None) -> str:
    """The demo session file; `fault` injects one fault, `phases` keeps only those phases (tests)."""
    names = [p for p in PHASES if phases is None or p in phases]
    unknown = sorted(set(phases or ()) - set(PHASES))
    if unknown:
        raise InvalidInput(f"no demo phase {unknown[0]!r}; the phases are {', '.join(PHASES)}")
    target = fault_phase or FAULT_PHASES.get(fault or "")
    reviewer = [sys.executable, "-m", "phasegate.demo.rule_reviewer"]
    values: dict[str, Any] = {
        "fault_note": f" with the fault {fault!r} injected" if fault else "",
        "budget_usd": 1.0, "gpu_hourly_usd": 1.74, "session_extra": "",
        "model": json.dumps(str(model_dir)), "reviewer": json.dumps(reviewer), "reviewer_timeout": 60,
    }
    if fault == "budget":  # $0.005 at an 8-GPU node's $18/hour lasts one second: it runs out inside the pilot
        values.update(budget_usd=0.005, gpu_hourly_usd=18.0)
    if fault == "oom":
        values["session_extra"] = "oom_samples = 2\n"
    if fault == "reviewer-hang":
        values.update(reviewer=json.dumps([*reviewer, "--hang"]), reviewer_timeout=5)
    text = HEADER.format(**values)
    for name in names:
        extra = "stall_timeout_s = 5\n" if fault == "stall" and name == target else ""
        body = PHASES[name]
        if extra:
            body = body.replace(f'id = "{name}"\n', f'id = "{name}"\n{extra}', 1)
        text += body
    return text


def write_workspace(folder: Path, session: str) -> Path:
    """Write the session file and the sample scripts into `folder`; returns the session file."""
    if folder.exists() and any(folder.iterdir()):
        raise RunDirError(f"{folder}: the demo workspace exists and is not empty; pick another --run-dir")
    for name, text in SCRIPTS.items():
        path = folder / "scripts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    session_file = folder / "session.toml"
    session_file.write_text(session)
    return session_file



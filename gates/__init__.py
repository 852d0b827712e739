"""Gate kinds: importing this package registers every built-in kind in GATE_KINDS."""

from phasegate.gates import approval, artifact, budget, policy, review, stat, threshold  # noqa: F401  (imported to register the kinds)
from phasegate.gates.base import (
    GATE_KINDS,
    Gate,
    GateContext,
    GateResult,
    GateStatus,
    InvalidGate,
    register,
)
from phasegate.gates.options import (
    GATE_OPTION_MODELS,
    build_gate,
    declare_gate,
    gate_kind,
    validate_gate_options,
)

__all__ = [
    "GATE_KINDS",
    "GATE_OPTION_MODELS",
    "Gate",
    "GateContext",
    "GateResult",
    "GateStatus",
    "InvalidGate",
    "build_gate",
    "declare_gate",
    "gate_kind",
    "register",
    "validate_gate_options",
]

"""The state machines refuse transitions they do not allow."""

import pytest

from phasegate.floor.errors import IllegalTransition
from phasegate.floor.states import (
    PhaseState,
    SessionState,
    check_phase_transition,
    check_session_transition,
)


@pytest.mark.parametrize("current,target", [
    (SessionState.COMPLETED, SessionState.RUNNING),
    (SessionState.CREATED, SessionState.PAUSED),
    (SessionState.PAUSED, SessionState.COMPLETED),
])
def test_illegal_session_transitions_raise(current, target):
    with pytest.raises(IllegalTransition):
        check_session_transition(current, target)


@pytest.mark.parametrize("current,target", [
    (PhaseState.PASSED, PhaseState.RUNNING),
    (PhaseState.PENDING, PhaseState.PASSED),
])
def test_illegal_phase_transitions_raise(current, target):
    with pytest.raises(IllegalTransition):
        check_phase_transition("p", current, target)


def test_legal_paths():
    check_session_transition(SessionState.CREATED, SessionState.RUNNING)
    check_session_transition(SessionState.PAUSED, SessionState.RUNNING)
    check_phase_transition("p", PhaseState.RUNNING, PhaseState.PENDING)
    check_phase_transition("p", PhaseState.FAILED, PhaseState.RUNNING)

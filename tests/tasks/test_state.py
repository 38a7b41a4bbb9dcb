"""The task state machine: every allowed move, and the exact error for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tundra.tasks.errors import StateMachineError
from tundra.tasks.model import FINAL_STATES, STATES
from tundra.tasks.state import EVENTS, TRANSITIONS, can_apply, next_state


@pytest.mark.parametrize(
    ("state", "event", "to"),
    [
        ("queued", "start", "running"),
        ("running", "complete", "review"),
        ("review", "approve", "done"),
        ("running", "finish", "done"),
        ("running", "fail", "failed"),
        ("failed", "retry", "queued"),
        ("running", "wait", "waiting"),
        ("waiting", "resume", "running"),
        ("review", "reject", "queued"),
        ("review", "fail", "failed"),
        ("running", "interrupt", "interrupted"),
        ("interrupted", "requeue", "queued"),
    ],
)
def test_documented_transitions(state: str, event: str, to: str) -> None:
    assert next_state(state, event) == to


def test_every_non_final_state_can_be_cancelled_and_finals_cannot() -> None:
    for s in STATES:
        assert can_apply(s, "cancel") == (s not in FINAL_STATES)


def test_invalid_transition_message_and_code() -> None:
    with pytest.raises(StateMachineError) as ei:
        next_state("done", "start")
    assert str(ei.value) == "invalid transition: cannot apply start in state done"
    assert ei.value.code == "task.invalid_transition" and ei.value.http_status == 409


@given(st.sampled_from(STATES), st.sampled_from(sorted(EVENTS)))
def test_next_state_is_total_over_the_table(state: str, event: str) -> None:
    if (state, event) in TRANSITIONS:
        assert next_state(state, event) in STATES
    else:
        with pytest.raises(StateMachineError, match=f"cannot apply {event} in state {state}"):
            next_state(state, event)


def test_finals_have_no_way_out() -> None:
    assert not [k for k in TRANSITIONS if k[0] in FINAL_STATES]

"""The call state table (h11 style): every listed move is allowed, any other is a LocalProtocolError."""

from __future__ import annotations

import itertools

import pytest

from voicelive_sip.errors import LocalProtocolError, VoiceLiveSipError
from voicelive_sip.sip.call_state import TRANSITIONS, CallState, next_state

S = CallState
ALLOWED = {
    (S.OFFERED, S.EARLY),
    (S.OFFERED, S.ENDED),
    (S.CALLING, S.EARLY),
    (S.CALLING, S.ESTABLISHED),
    (S.CALLING, S.ENDED),
    (S.EARLY, S.EARLY),
    (S.EARLY, S.ESTABLISHED),
    (S.EARLY, S.ENDED),
    (S.ESTABLISHED, S.ENDED),
}
ALL_PAIRS = list(itertools.product(CallState, repeat=2))


def test_the_table_is_exactly_the_documented_moves() -> None:
    assert set(TRANSITIONS) == set(CallState)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[S.ENDED] = frozenset({S.OFFERED})  # type: ignore[index]
    assert all(isinstance(targets, frozenset) for targets in TRANSITIONS.values())


@pytest.mark.parametrize(("current", "wanted"), sorted(ALLOWED, key=str), ids=str)
def test_allowed_move(current: CallState, wanted: CallState) -> None:
    assert next_state(current, wanted) is wanted


@pytest.mark.parametrize(
    ("current", "wanted"), [pair for pair in ALL_PAIRS if pair not in ALLOWED], ids=lambda s: s.value
)
def test_forbidden_move(current: CallState, wanted: CallState) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        next_state(current, wanted)
    assert str(caught.value) == f"a call cannot go from {current.value} to {wanted.value}"
    assert isinstance(caught.value, VoiceLiveSipError)


@pytest.mark.parametrize("wanted", list(CallState), ids=lambda s: s.value)
def test_ended_is_terminal(wanted: CallState) -> None:
    assert TRANSITIONS[S.ENDED] == frozenset()
    with pytest.raises(LocalProtocolError):
        next_state(S.ENDED, wanted)


def test_every_state_can_end_except_ended() -> None:
    assert [s for s in CallState if S.ENDED not in TRANSITIONS[s]] == [S.ENDED]


def test_established_is_reachable_only_from_calling_or_early() -> None:
    assert {s for s in CallState if S.ESTABLISHED in TRANSITIONS[s]} == {S.CALLING, S.EARLY}


def test_incoming_and_outgoing_paths() -> None:
    incoming = [S.EARLY, S.ESTABLISHED, S.ENDED]  # 2xx sent, ACK received, BYE
    state = S.OFFERED
    for wanted in incoming:
        state = next_state(state, wanted)
    assert state is S.ENDED
    outgoing = [S.EARLY, S.EARLY, S.ESTABLISHED, S.ENDED]  # 180, 183, 200, BYE
    state = S.CALLING
    for wanted in outgoing:
        state = next_state(state, wanted)
    assert state is S.ENDED


def test_state_values() -> None:
    assert [s.value for s in CallState] == ["offered", "calling", "early", "established", "ended"]

"""The private SDK and aiohttp internals `voicelive/_sdk.py` relies on still have the shape it expects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import voicelive_sip
from voicelive_sip.voicelive import _sdk


def test_the_installed_sdk_and_aiohttp_have_the_expected_shape() -> None:
    problems = _sdk.shape_problems()
    assert not problems, (
        f"voicelive_sip/voicelive/_sdk.py was written for {_sdk.PINNED}, "
        f"installed: {_sdk.installed_versions()}. "
        "Its private reaches no longer match: " + "; ".join(problems) + ". Update _sdk.py (and PINNED) for "
        "the new versions, or pin the old ones."
    )


def test_a_changed_shape_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp._websocket.writer import WebSocketWriter

    def write(self: object, data: bytes, opcode: int) -> None: ...

    monkeypatch.setattr(WebSocketWriter, "_write_websocket_frame", write)
    [problem] = _sdk.shape_problems()
    assert "_write_websocket_frame" in problem


def test_no_other_module_reaches_into_private_sdk_or_aiohttp_internals() -> None:
    package = Path(voicelive_sip.__file__).parent
    private = ("_connection", "_writer", "_write_websocket_frame", "tb_frame", "f_locals")
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "_sdk.py" and path.parent.name == "voicelive":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{path.relative_to(package)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Constant) and node.value in private:
                offenders.append(f"{path.relative_to(package)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders

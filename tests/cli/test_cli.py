"""The command line: `--version`, and the demo completes a call."""

from __future__ import annotations

import pytest

from voicelive_sip import __version__
from voicelive_sip.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_demo_completes_a_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for line in (
        "INVITE sip:agent@",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "ACK sip:agent@",
        "BYE sip:agent@",
    ):
        assert line in out
    assert "ACK matched: True" in out
    assert "greeting of" in out and "Hello" in out


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2

"""The transaction-user modules are sans-I/O: importing any one of them alone loads no asyncio."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = [
    "voicelive_sip.sip.session_timer",
    "voicelive_sip.sip.glare",
    "voicelive_sip.sip.binding",
    "voicelive_sip.sip.admission",
    "voicelive_sip.sip.uas",
    "voicelive_sip.sip.call_state",
]


@pytest.mark.parametrize("module", MODULES)
def test_importing_loads_no_asyncio(module: str) -> None:
    code = (
        f"import sys, {module}; "
        f"print({module!r} in sys.modules, sorted(m for m in sys.modules if m.split('.')[0] == 'asyncio'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True []"

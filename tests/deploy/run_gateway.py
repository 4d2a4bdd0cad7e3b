"""`voicelive-sip ARGS` for the deployment kit's tests: the CLI's `main`, run as its own process.

The kit's env files set `SIP_BUSY_STATUS=503`, which the settings refuse from the environment today (the
string '503' is not the literal 503; fixed on another branch). Until that fix lands this applies such a value
after loading; once the environment parses, it runs the CLI untouched.
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from voicelive_sip import cli
from voicelive_sip.config import Settings, SipSettings


def _busy_status_workaround() -> None:
    try:
        SipSettings()
    except ValidationError as error:
        if not any(e["loc"] == ("busy_status",) for e in error.errors()):
            return  # another problem: let the CLI report it
        status = int(os.environ.pop("SIP_BUSY_STATUS"))
        load = cli.load_settings

        def load_with_busy_status() -> Settings:
            settings = load()
            settings.sip.busy_status = 503 if status == 503 else 486
            return settings

        cli.load_settings = load_with_busy_status


if __name__ == "__main__":
    _busy_status_workaround()
    sys.exit(cli.main(sys.argv[1:]))

"""The compose demo's test caller: calls through Kamailio, in each of which it speaks and hears the agent.

    python deploy/demo_caller.py sip:agent@127.0.0.1:5060 --calls 6

Prints one line per call and exits 0 when every call was answered and the agent was heard, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import numpy as np

from voicelive_sip.aio import CallFailed
from voicelive_sip.testing import PhoneCall, SipPhone

# What the caller says: 0.6 s of a 1 kHz tone (the fake Voice Live's VAD takes it for a turn).
TONE = np.asarray(0.3 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(4800) / 8000), dtype=np.int16)


async def one_call(phone: SipPhone, target: str, index: int, seconds: float) -> bool:
    try:
        call = await phone.call(target, timeout=20)
    except CallFailed as error:
        print(f"call {index}: failed {error.status_code} {error.reason}", flush=True)
        return False
    call.play_nowait(TONE)
    with contextlib.suppress(TimeoutError):
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=15)
    await asyncio.sleep(seconds)
    heard = call.first_audio_time() is not None
    level = call.energy_dbfs()
    await hang_up(call)
    print(f"call {index}: answered, agent {'heard' if heard else 'NOT heard'} ({level:.1f} dBFS)", flush=True)
    return heard


async def hang_up(call: PhoneCall) -> None:
    if not call.ended:
        await call.hangup()


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the SIP URI to call, e.g. sip:agent@127.0.0.1:5060 (Kamailio)")
    parser.add_argument("--calls", type=int, default=6, help="how many calls (default 6)")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long each call lasts after the agent")
    parser.add_argument("--media-port", type=int, default=30000, help="first RTP port of the caller")
    args = parser.parse_args(argv)
    async with SipPhone(media_port=args.media_port, media_ports=4 * args.calls) as phone:
        results = await asyncio.gather(
            *(one_call(phone, args.target, index + 1, args.seconds) for index in range(args.calls))
        )
    print(f"{sum(results)} of {args.calls} calls heard the agent", flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

"""Shared by the RTP session tests: a running media clock, and waiting for a condition (no blind sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from voicelive_sip.rtp.clock import MediaClock


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def clock() -> AsyncIterator[MediaClock]:
    async with MediaClock() as running:
        yield running

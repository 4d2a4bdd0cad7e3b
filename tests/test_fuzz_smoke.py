"""A short, deterministic run of every fuzz target (fuzz/): the seeds and a few hundred mutations each.

The full coverage-guided run is `nox -s fuzz`; this only proves the targets still hold on known ground.
"""

from __future__ import annotations

import pytest

from fuzz.mutate import run
from fuzz.targets import TARGETS

RUNS = 500


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_target_holds(name: str) -> None:
    result = run(TARGETS[name], RUNS, seed=13)

    assert result.runs == RUNS
    assert not result.failures, "\n".join(
        f"{key}: {data[:120]!r}\n{trace}" for key, (data, trace) in result.failures.items()
    )


def test_the_smoke_is_deterministic() -> None:
    target = TARGETS["rtp"]
    assert run(target, 50, seed=1).failures == run(target, 50, seed=1).failures

"""A seeded, coverage-free mutator: the CI smoke and the fallback when atheris is not installed."""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass, field

from fuzz.targets import Target

_INTERESTING = b"\x00\x01\x7f\x80\xff\r\n\t :;,=\"'\\/<>[]@%-.0123456789"
_NUMBERS = (b"0", b"-1", b"65535", b"65536", b"4294967295", b"4294967296", b"9" * 30, b"1e999", b"nan")


@dataclass(slots=True)
class RunResult:
    """How many inputs ran and the first failure of each kind (exception type and where it was raised)."""

    target: str
    runs: int = 0
    seconds: float = 0.0
    failures: dict[str, tuple[bytes, str]] = field(default_factory=dict)


def mutate(data: bytes, corpus: list[bytes], words: tuple[bytes, ...], rng: random.Random) -> bytes:
    """One to four random edits: flips, interesting bytes, dictionary words, splices, cuts, repeats."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9)
        position = rng.randint(0, len(out))
        if choice == 0 and out:
            index = rng.randrange(len(out))
            out[index] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[rng.randrange(len(out))] = rng.choice(_INTERESTING)
        elif choice == 2:
            out[position:position] = rng.choice(words or (b"\r\n",))
        elif choice == 3:
            out[position:position] = rng.choice(_NUMBERS)
        elif choice == 4 and out:
            end = rng.randint(position, min(len(out), position + 64))
            del out[position:end]
        elif choice == 5 and out:
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 64)]
            out[position:position] = piece * rng.randint(1, 8)
        elif choice == 6:
            other = rng.choice(corpus)
            start = rng.randint(0, len(other))
            out[position:] = other[start:]
        elif choice == 7:
            del out[position:]
        else:
            out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def run(target: Target, runs: int, *, seed: int = 0, slow: float = 5.0) -> RunResult:
    """Feed `runs` inputs (the seeds first, then mutations of the seeds and of earlier inputs)."""
    rng = random.Random(seed)
    seeds = target.seeds()
    corpus = list(seeds)
    result = RunResult(target.name)
    started = time.perf_counter()
    for number in range(runs):
        data = (
            seeds[number]
            if number < len(seeds)
            else mutate(rng.choice(corpus), corpus, target.dictionary, rng)
        )
        before = time.perf_counter()
        try:
            target.function(data)
        except Exception as error:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            key = f"{type(error).__name__} at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
            if key not in result.failures:
                result.failures[key] = (data, traceback.format_exc())
        elapsed = time.perf_counter() - before
        if elapsed > slow and "slow" not in result.failures:
            result.failures["slow"] = (data, f"one input took {elapsed:.1f} s")
        # Keep a bounded pool of recent inputs so mutations can stack up without growing memory.
        if len(corpus) < 4096:
            corpus.append(data)
        else:
            corpus[rng.randrange(len(seeds), len(corpus))] = data
        result.runs += 1
    result.seconds = time.perf_counter() - started
    return result

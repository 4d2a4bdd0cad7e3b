"""`python -m fuzz.<target> [libFuzzer flags] [corpus_dir ...]`: one target under atheris, or the mutator."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path


def _seed(corpus_dirs: list[Path], seeds: list[bytes]) -> None:
    # An empty (or new) first corpus directory starts from the seed corpus.
    if corpus_dirs and not (corpus_dirs[0].is_dir() and any(corpus_dirs[0].iterdir())):
        corpus_dirs[0].mkdir(parents=True, exist_ok=True)
        for number, data in enumerate(seeds):
            (corpus_dirs[0] / f"seed-{number:03d}").write_bytes(data)


def main(name: str) -> None:
    args = sys.argv[1:]
    corpus_dirs = [Path(arg) for arg in args if not arg.startswith("-")]
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        _without_atheris(name, args)
        return
    with atheris.instrument_imports(include=["voicelive_sip"]):
        targets = importlib.import_module("fuzz.targets")
    target = targets.TARGETS[name]
    _seed(corpus_dirs, target.seeds())
    atheris.Setup([sys.argv[0], *args], target.function)
    atheris.Fuzz()


def _without_atheris(name: str, args: list[str]) -> None:
    from fuzz.mutate import run
    from fuzz.targets import TARGETS

    runs = 20_000
    for arg in args:
        match = re.fullmatch(r"-(?:atheris_)?runs=(\d+)", arg)
        if match:
            runs = int(match.group(1))
    result = run(TARGETS[name], runs)
    for key, (data, trace) in result.failures.items():
        print(f"== {key}: input {data[:200]!r}\n{trace}", file=sys.stderr)
    print(f"Done {result.runs} runs in {result.seconds:.0f} second(s) (atheris not installed: no coverage)")
    sys.exit(1 if result.failures else 0)

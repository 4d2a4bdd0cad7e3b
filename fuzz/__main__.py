"""`python -m fuzz [--runs N] [target ...]`: run each target in turn and print inputs run and failures.

Each target runs in its own process under atheris (libFuzzer, coverage-guided) when atheris is installed,
with its seed corpus, a dictionary, a 10 s per-input timeout and a 1 GiB RSS limit; crashing inputs land in
`.fuzz/crashes/`. Without atheris the seeded mutator of `fuzz.mutate` runs instead (no coverage feedback).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.targets import TARGETS

WORK = Path(".fuzz")


def _dictionary(words: tuple[bytes, ...], path: Path) -> None:
    lines = ['"' + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in w) + '"'
             for w in words]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    parser.add_argument("--runs", type=int, default=20_000, help="inputs per target (default 20000)")
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    options = parser.parse_args()
    unknown = set(options.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    use_atheris = importlib.util.find_spec("atheris") is not None
    print(f"fuzzing with {'atheris (libFuzzer, coverage-guided)' if use_atheris else 'the seeded mutator'}")
    summary: list[tuple[str, int, float, str]] = []
    for name in options.targets or list(TARGETS):
        corpus = WORK / "corpus" / name
        crashes = WORK / "crashes"
        crashes.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", f"fuzz.{name}", f"-atheris_runs={options.runs}"]
        if use_atheris:
            command += ["-timeout=10", "-rss_limit_mb=1024", f"-artifact_prefix={crashes}/{name}-"]
            if TARGETS[name].dictionary:
                dictionary = WORK / f"{name}.dict"
                _dictionary(TARGETS[name].dictionary, dictionary)
                command.append(f"-dict={dictionary}")
        command.append(str(corpus))
        started = time.monotonic()
        process = subprocess.run(command, capture_output=True, text=True, errors="replace")
        elapsed = time.monotonic() - started
        output = process.stdout + process.stderr
        counts = re.findall(r"Done (\d+) (?:runs )?in|^#(\d+)\s", output, re.MULTILINE)
        runs = max((int(a or b) for a, b in counts), default=0)
        failure = ""
        if process.returncode != 0:
            tail = output[output.find("=== Uncaught") :] if "=== Uncaught" in output else output[-3000:]
            failure = tail.split("\nINFO:", 1)[0].strip()
        summary.append((name, runs, elapsed, failure))
        print(f"{name:14} {runs:>9} inputs {elapsed:7.1f} s  {'FAILED' if failure else 'ok'}", flush=True)
        if failure:
            print(failure[:4000], flush=True)
    failed = [name for name, _, _, failure in summary if failure]
    print(
        f"{len(summary) - len(failed)} of {len(summary)} targets passed"
        + (f"; failed: {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Coverage-guided fuzzing of every parser that reads a peer's bytes (issue 13, item 10).

`python -m fuzz --runs 20000` runs every target one after another (atheris when installed, else a seeded
mutator); `python -m fuzz.sip_parser -atheris_runs=N corpus_dir` runs one target under atheris/libFuzzer.
The targets live in `fuzz.targets`; `tests/test_fuzz_smoke.py` runs them briefly in CI without atheris.
"""

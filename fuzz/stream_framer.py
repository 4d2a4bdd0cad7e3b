"""`python -m fuzz.stream_framer -atheris_runs=N corpus_dir`: see `fuzz.targets.stream_framer`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("stream_framer")

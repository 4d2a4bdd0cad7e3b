"""`python -m fuzz.rtp -atheris_runs=N corpus_dir`: see `fuzz.targets.rtp`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("rtp")

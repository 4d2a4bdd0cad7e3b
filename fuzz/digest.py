"""`python -m fuzz.digest -atheris_runs=N corpus_dir`: see `fuzz.targets.digest`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("digest")

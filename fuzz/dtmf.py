"""`python -m fuzz.dtmf -atheris_runs=N corpus_dir`: see `fuzz.targets.dtmf`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("dtmf")

"""`python -m fuzz.rtcp -atheris_runs=N corpus_dir`: see `fuzz.targets.rtcp`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("rtcp")

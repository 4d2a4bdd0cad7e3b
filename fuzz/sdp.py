"""`python -m fuzz.sdp -atheris_runs=N corpus_dir`: see `fuzz.targets.sdp`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("sdp")

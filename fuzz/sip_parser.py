"""`python -m fuzz.sip_parser -atheris_runs=N corpus_dir`: see `fuzz.targets.sip_parser`."""

from fuzz._driver import main

if __name__ == "__main__":
    main("sip_parser")

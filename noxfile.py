"""Developer sessions: `nox -s lint typecheck tests`, `nox -s bench` for the benchmarks, `nox -s fuzz`."""

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    paths = ("voicelive_sip", "tests", "benchmarks", "examples", "fuzz", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "voicelive_sip")


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-only",
        "--benchmark-columns=min,median,mean,ops",
        *session.posargs,
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """Every fuzz target in turn: `nox -s fuzz -- --runs 200000 sip_parser` (default 20000 inputs each)."""
    session.install("-e", ".")
    try:
        session.install("atheris")
    except nox.command.CommandFailed:
        session.warn("atheris did not install: the seeded mutator runs instead (no coverage feedback)")
    session.run("python", "-m", "fuzz", *(session.posargs or ["--runs", "20000"]))

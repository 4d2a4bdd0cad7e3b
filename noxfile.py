"""Developer sessions: `nox -s lint typecheck tests`, and `nox -s bench` for the benchmarks."""

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
    session.run("ruff", "check", "voicelive_sip", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "voicelive_sip", "tests", "benchmarks", "examples", "noxfile.py")


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

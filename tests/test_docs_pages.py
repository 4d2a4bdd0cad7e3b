"""The pages a new user copies from match what runs: the testing page's project is `examples/my_voice_agent`,
the README's snippet runs as a script, and the paths it names exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```', re.MULTILINE | re.DOTALL)


def _blocks(page: Path) -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(page.read_text())]


def test_the_testing_page_holds_the_example_project_file_for_file() -> None:
    titled = {title: body for _, title, body in _blocks(ROOT / "docs" / "testing.md") if title}
    project = ROOT / "examples" / "my_voice_agent"
    files = {"pyproject.toml", "my_agent.py", "tests/test_my_agent.py"}
    assert set(titled) >= files
    for name in files:
        assert titled[name] == (project / name).read_text(), (
            f"docs/testing.md and examples/my_voice_agent/{name}"
        )


def test_the_readme_snippet_is_a_script_without_a_top_level_await() -> None:
    python = [body for kind, _, body in _blocks(ROOT / "README.md") if kind == "python"]
    assert python
    for body in python:
        ast.parse(body)  # a top-level await is a SyntaxError outside a notebook or asyncio REPL


def test_the_paths_the_readme_names_exist() -> None:
    text = (ROOT / "README.md").read_text()
    assert "tests/e2e" in text  # where the baresip tests are
    for path in re.findall(r"\b((?:tests|examples|docs|benchmarks|fuzz)/[\w./-]*\w)", text):
        assert (ROOT / path).exists(), path


def test_no_page_says_an_unconfigured_gateway_talks_to_a_fake() -> None:
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = page.read_text()
        assert "unconfigured gateway talks to the fake" not in text, page
        assert "talks to a fake Voice Live on" not in text, page
        assert "default endpoint is `http://127.0.0.1:8765`" not in text, page

"""The docs site builds with `mkdocs build --strict`; its configuration reference covers every setting."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import AliasChoices, BaseModel

from voicelive_sip.config import Settings

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (pip install -e '.[dev]')"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "configuration" / "index.html").is_file()
    assert (site / "api" / "gateway" / "index.html").is_file()


def _fields(model: type[BaseModel], path: str) -> Iterator[tuple[type[BaseModel], str, str]]:
    """(model, field name, dotted path) of every leaf setting, groups and nested groups walked."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{path}{name}.")
        else:
            yield model, name, f"{path}{name}"


def _env_name(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    for choice in choices:
        if isinstance(choice, str) and choice != name:
            return choice.upper()
    return (str(model.model_config.get("env_prefix", "")) + name).upper()


def test_configuration_reference_lists_every_setting(site: Path) -> None:
    page = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    ids = set(re.findall(r'id="([^"]+)"', page))
    fields = list(_fields(Settings, ""))
    assert len(fields) > 50  # the walk found the groups
    missing = []
    for model, name, path in fields:
        env = _env_name(model, name)
        description = " ".join((model.model_fields[name].description or "").split())
        if env not in ids or path not in text or description not in text:
            missing.append(f"{path} ({env})")
    assert not missing, f"settings missing from the generated configuration page: {missing}"

"""mkdocs hook: the configuration reference, generated from the pydantic Settings models at build time.

A page containing the marker `<!-- settings-reference -->` gets one section per settings group (every field of
`Settings` whose type is itself a model) with a table of environment variables, types, defaults and
descriptions. Nothing is listed by hand, so the page cannot drift from `voicelive_sip/config.py`.
"""

from __future__ import annotations

import html
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = "<!-- settings-reference -->"
ROOT = Path(__file__).resolve().parents[2]

_BOUNDS = (
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.Le, "le", "≤"),
)
_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret string"}


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # a source checkout that was never pip-installed
    from voicelive_sip.config import Settings

    return markdown.replace(MARKER, render(Settings))


def render(root: type[BaseModel]) -> str:
    """Markdown for every group of `root`, in field order, then `root`'s own plain fields (if any)."""
    sections: list[str] = []
    plain: list[tuple[str, FieldInfo]] = []
    for name, field in root.model_fields.items():
        group = _model_of(field.annotation)
        if group is None:
            plain.append((name, field))
        else:
            sections.append(_section(name, group))
    if plain:
        rows = [_row(root, name, field, name) for name, field in plain]
        sections.append(f"## Other settings\n\n{_table(rows)}")
    return "\n\n".join(sections)


def env_names(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    """The environment variables pydantic-settings reads for a field (upper-cased; matching ignores case)."""
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    choices: list[Any] = list(alias.choices) if isinstance(alias, AliasChoices) else [alias]
    # An alias equal to the field name is there for `populate_by_name` (keyword arguments), not for the env.
    named = [c.upper() for c in choices if isinstance(c, str) and c != name]
    if named:
        return named
    prefix = str(model.model_config.get("env_prefix", ""))
    return [(prefix + name).upper()]


def _section(path: str, model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    head = f"## `{path}`: {model.__name__}\n\n{html.escape(doc, quote=False)}\n\n"
    rows: list[str] = []
    nested: list[str] = []
    for name, field in model.model_fields.items():
        group = _model_of(field.annotation)
        if group is None:
            rows.append(_row(model, name, field, f"{path}.{name}"))
        else:
            nested.append(_section(f"{path}.{name}", group))
    return head + _table(rows) + "".join("\n\n" + n for n in nested)


def _table(rows: list[str]) -> str:
    head = "| Environment variable | Type | Default | Description |\n|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


def _row(model: type[BaseModel], name: str, field: FieldInfo, path: str) -> str:
    names = env_names(model, name, field)
    anchors = "".join(f'<a id="{n}"></a>' for n in names)
    variables = "<br>".join(f"`{n}`" for n in names)
    setting = f'<br><small class="setting-path">{html.escape(path)}</small>'
    kind = _type(field.annotation) + _bounds(field)
    description = _cell(field.description or "")
    return f"| {anchors}{variables}{setting} | {kind} | {_default(field)} | {description} |"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} (optional)" if type(None) in args else text
    if origin is typing.Literal:
        values = ", ".join(f"`{_plain(v)}`" for v in args)
        return values if len(args) == 1 else f"one of {values}"
    if origin in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        if len(items) == 1 and typing.get_origin(items[0]) is typing.Literal:
            inner = ", ".join(f"`{_plain(v)}`" for v in typing.get_args(items[0]))
        else:
            inner = ", ".join(_type(a) for a in items) or "values"
        return f"comma-separated list of {inner}"
    if annotation in _NAMES:
        return _NAMES[annotation]
    return _cell(getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    found = []
    for constraint in field.metadata:
        for kind, attr, symbol in _BOUNDS:
            if isinstance(constraint, kind):
                found.append(f"{symbol} {getattr(constraint, attr)}")
    return f", {', '.join(found)}" if found else ""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:  # a factory that needs the validated data: nothing static to show
            return "computed"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, list | tuple | set | frozenset):
        return f"`{','.join(_plain(v) for v in value)}`" if value else "empty"
    if value == "":
        return "empty"
    return f"`{_plain(value)}`"


def _plain(value: Any) -> str:
    """A value as one writes it in the environment, safe inside a code span in a table cell."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text.replace("|", "¦").replace("`", "'")


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "&#124;")

"""Function calling: `@tool` turns a typed, documented Python function into a Voice Live function tool.

The JSON schema the model sees is derived from the type hints, and the same hints validate the arguments the
model sends back, so the two cannot disagree. `ToolRunner` runs tools for a call and always answers with a
JSON string, an error object included, because the model needs *some* `function_call_output` to go on.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Generic, Literal, ParamSpec, TypeVar, overload

import pydantic
import pydantic_core

from voicelive_sip.errors import VoiceLiveSipError

from .._logger import get_logger

__all__ = ["CallInfo", "Tool", "ToolRunner", "tool"]

log = get_logger("voicelive_sip.voicelive.tools")

P = ParamSpec("P")
R = TypeVar("R")

# OpenAI-style function names, which Voice Live inherits.
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A tool's error text goes back to the model (and may be read to the caller): keep it short.
_MAX_ERROR_CHARS: Final = 500
# `name: text`, `name (type): text` (Google `Args:`) and `:param [type] name: text` (Sphinx) lines.
_PARAM_LINE_RE: Final = re.compile(r"^(?P<indent>\s*)(?P<name>\w+)\s*(?:\([^)]*\))?\s*:\s*(?P<text>.*)$")
_SPHINX_LINE_RE: Final = re.compile(r"^(?P<indent>\s*):param\s+(?:[^:]*\s)?(?P<name>\w+)\s*:\s*(?P<text>.*)$")

_LAX: Final = pydantic.ConfigDict(coerce_numbers_to_str=True)
_SUPPORTED: Final = (
    "str, int, float, bool, Literal[...], an Enum, list[X], dict[str, X], X | None, "
    "a dataclass or a pydantic BaseModel"
)


@dataclasses.dataclass(frozen=True, slots=True)
class CallInfo:
    """The call a tool runs for; a parameter annotated with it is injected, never sent by the model."""

    call_id: str
    caller: str
    callee: str
    direction: Literal["inbound", "outbound"]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the call API request's metadata
    # W3C trace context (`traceparent`, `tracestate`) of the tool's span with the [otel] extra, else empty:
    # headers for a tool that calls a traced service.
    trace_context: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    adapter: pydantic.TypeAdapter[Any]
    required: bool


class ToolArgumentsError(VoiceLiveSipError, ValueError):
    """The model's arguments do not fit the tool's signature."""


class Tool(Generic[P, R]):
    """A function tool: still callable like the function it wraps, plus its Voice Live definition."""

    __name__: str  # set by functools.update_wrapper, with __doc__ and __wrapped__

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.func: Final = func
        self.name: Final[str] = name if name is not None else func.__name__
        if not _NAME_RE.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"tool {self.name!r}: timeout must be positive, got {timeout!r}")
        self.timeout: Final = timeout
        self.is_async: Final = inspect.iscoroutinefunction(func)
        summary, param_docs = _parse_docstring(inspect.getdoc(func) or "")
        self.description: Final[str] = description if description is not None else summary
        if not self.description:
            raise TypeError(
                f"tool {self.name!r} needs a docstring or description=: the model picks tools by it"
            )
        self._call_param, self._params, self._parameters_schema = _inspect_signature(
            func, self.name, param_docs
        )
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"

    @property
    def definition(self) -> dict[str, Any]:
        """The `tools` entry of a `session.update` (a fresh copy each time)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self._parameters_schema),
        }

    def bind(self, arguments_json: str, call: CallInfo | None = None) -> dict[str, Any]:
        """Validate and coerce the model's JSON arguments to keyword arguments, else `ToolArgumentsError`."""
        try:
            # Models send "" for a tool without parameters.
            arguments = json.loads(arguments_json) if arguments_json.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(
                f"arguments are not valid JSON: {exc.msg} at position {exc.pos}"
            ) from None
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        problems: list[str] = []
        unknown = sorted(set(arguments) - {p.name for p in self._params})
        if unknown:
            problems.append(f"unknown argument(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for param in self._params:
            if param.name not in arguments:
                if param.required:
                    problems.append(f"{param.name}: missing required argument")
                continue
            try:
                kwargs[param.name] = param.adapter.validate_python(arguments[param.name])
            except pydantic.ValidationError as exc:
                problems.extend(_describe(param.name, exc))
        if problems:
            raise ToolArgumentsError("; ".join(problems))
        if self._call_param is not None:
            name, optional = self._call_param
            if call is None and not optional:
                raise ToolArgumentsError(f"tool {self.name!r} needs the call's CallInfo and none was given")
            kwargs[name] = call
        return kwargs

    async def invoke(self, kwargs: Mapping[str, Any]) -> Any:
        """Run the function with bound arguments, a sync one in a worker thread."""
        if self.is_async:
            return await typing.cast(Callable[..., Awaitable[Any]], self.func)(**kwargs)
        return await asyncio.to_thread(functools.partial(self.func, **kwargs))


@overload
def tool(func: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Make `func` a `Tool`; use bare (`@tool`) or with options (`@tool(name=..., timeout=...)`)."""
    if func is not None:
        return Tool(func)

    def decorate(f: Callable[P, R]) -> Tool[P, R]:
        return Tool(f, name=name, description=description, timeout=timeout)

    return decorate


class ToolRunner:
    """Runs tools by name with validated arguments, a timeout and a concurrency limit; never raises."""

    def __init__(
        self,
        tools: Iterable[Tool[..., Any]],
        *,
        timeout: float = 10.0,
        max_concurrent: int = 4,
        max_output_chars: int = 65536,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
        self._tools: dict[str, Tool[..., Any]] = {}
        for t in tools:
            if t.name in self._tools:
                raise ValueError(f"two tools are named {t.name!r}")
            self._tools[t.name] = t
        self.timeout: Final = timeout
        self.max_concurrent: Final = max_concurrent
        self.max_output_chars: Final = max_output_chars
        self._semaphore = asyncio.Semaphore(max_concurrent)

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """The `tools` list of a `session.update`."""
        return [t.definition for t in self._tools.values()]

    def has(self, name: str) -> bool:
        """Whether a tool of this name is registered."""
        return name in self._tools

    async def run(self, name: str, arguments_json: str, *, call: CallInfo | None = None) -> str:
        """Run tool `name` and return its JSON result, or `{"error": {"type", "message"}}` on any failure."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        call_id = call.call_id if call is not None else None

        def failed(kind: str, message: str, **extra: Any) -> str:
            duration_ms = round((loop.time() - started) * 1000, 1)
            # Argument values and error text may hold caller data: only kinds at warning level.
            log.warning(
                "voicelive.tool_failed",
                name=name,
                call_id=call_id,
                duration_ms=duration_ms,
                error=kind,
                **extra,
            )
            return _error(kind, message)

        selected = self._tools.get(name)
        if selected is None:
            return failed("unknown_tool", f"there is no tool named {name!r}")
        try:
            kwargs = selected.bind(arguments_json, call)
        except ToolArgumentsError as exc:
            log.debug("voicelive.tool_arguments", name=name, call_id=call_id, arguments=arguments_json)
            return failed("invalid_arguments", str(exc))
        timeout = selected.timeout if selected.timeout is not None else self.timeout
        async with self._semaphore:
            # Only the tool's own run is timed: waiting for a slot is bounded by the running tools' timeouts.
            # A timed-out sync tool's thread cannot be killed; it finishes in the background.
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    result = await selected.invoke(kwargs)
            except Exception as exc:
                # A TimeoutError the tool raised itself is the tool's failure, not ours.
                if isinstance(exc, TimeoutError) and deadline.expired():
                    return failed("timeout", f"tool {name!r} did not finish within {timeout:g} s")
                log.debug("voicelive.tool_exception", name=name, call_id=call_id, exc_info=exc)
                return failed("tool_error", _exception_text(exc), exception=type(exc).__name__)
        try:
            output = result if isinstance(result, str) else _dumps(result)
        except (TypeError, ValueError, pydantic_core.PydanticSerializationError) as exc:
            return failed(
                "invalid_result", f"tool {name!r} returned a value that is not JSON: {exc}"[:_MAX_ERROR_CHARS]
            )
        if len(output) > self.max_output_chars:
            return failed(
                "output_too_large",
                f"tool {name!r} returned {len(output)} characters, over {self.max_output_chars}",
            )
        log.info(
            "voicelive.tool_call",
            name=name,
            call_id=call_id,
            duration_ms=round((loop.time() - started) * 1000, 1),
        )
        return output


def _dumps(value: Any) -> str:
    # `to_jsonable_python` knows models, dataclasses, enums, datetimes, UUIDs, Decimals and sets.
    return json.dumps(value, ensure_ascii=False, default=pydantic_core.to_jsonable_python)


def _error(kind: str, message: str) -> str:
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)


def _exception_text(exc: BaseException) -> str:
    text = str(exc)
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:_MAX_ERROR_CHARS]


def _describe(name: str, exc: pydantic.ValidationError) -> list[str]:
    # Short, URL-free messages without the input values: they go back to the model.
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join([name, *(str(part) for part in err["loc"])])
        out.append(f"{where}: {err['msg']}")
    return out


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, joined into one line, and per-parameter descriptions from the rest."""
    paragraphs = doc.strip().split("\n\n", 1)
    summary = " ".join(line.strip() for line in paragraphs[0].splitlines() if line.strip())
    params: dict[str, str] = {}
    if len(paragraphs) < 2:
        return summary, params
    current: str | None = None
    indent = 0
    for line in paragraphs[1].splitlines():
        match = _SPHINX_LINE_RE.match(line) or _PARAM_LINE_RE.match(line)
        if match and match["text"].strip():
            current, indent = match["name"], len(match["indent"])
            params[current] = match["text"].strip()
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            params[current] += " " + line.strip()
        else:
            current = None
    return summary, params


def _inspect_signature(
    func: Callable[..., Any], tool_name: str, docs: Mapping[str, str]
) -> tuple[tuple[str, bool] | None, tuple[_Parameter, ...], dict[str, Any]]:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError as exc:
        raise TypeError(f"tool {tool_name!r}: cannot resolve a type hint ({exc})") from exc
    call_param: tuple[str, bool] | None = None
    params: list[_Parameter] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    for p in inspect.signature(func).parameters.values():
        where = f"tool {tool_name!r}, parameter {p.name!r}"
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(
                f"{where}: tools take named parameters only (no *args, **kwargs or positional-only)"
            )
        if p.name not in hints:
            raise TypeError(f"{where}: needs a type hint")
        annotation = hints[p.name]
        members = _non_none(annotation)
        if members == (CallInfo,):
            if call_param is not None:
                raise TypeError(f"{where}: only one parameter may take the CallInfo")
            call_param = (p.name, annotation is not CallInfo or p.default is not p.empty)
            continue
        optional = members is not None and len(members) < len(typing.get_args(_strip_annotated(annotation)))
        # Top-level `X | None` means "may be left out", so the model sees X and None is the default.
        schema = _schema(_union(members) if optional and members else annotation, where, defs)
        if p.name in docs:
            schema["description"] = docs[p.name]
        properties[p.name] = schema
        has_default = p.default is not p.empty or optional
        if not has_default:
            required.append(p.name)
        params.append(_Parameter(p.name, _adapter(annotation, where), not has_default))
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    if defs:
        parameters["$defs"] = defs
    return call_param, tuple(params), parameters


def _adapter(annotation: Any, where: str) -> pydantic.TypeAdapter[Any]:
    try:
        # Models often send an order number as 1234 where the tool takes a str: accept it.
        return pydantic.TypeAdapter(annotation, config=_LAX)
    except pydantic.PydanticUserError:
        pass  # a model or dataclass brings its own config
    try:
        return pydantic.TypeAdapter(annotation)
    except pydantic.PydanticUserError as exc:
        raise TypeError(f"{where}: {exc}") from exc


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = annotation.__origin__
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _non_none(annotation: Any) -> tuple[Any, ...] | None:
    """The members of a union other than None, or None if `annotation` is not a union."""
    annotation = _strip_annotated(annotation)
    if not _is_union(annotation):
        return (annotation,) if annotation is CallInfo else None
    return tuple(a for a in typing.get_args(annotation) if a is not type(None))


def _union(members: tuple[Any, ...]) -> Any:
    return members[0] if len(members) == 1 else functools.reduce(lambda a, b: a | b, members)


def _schema(annotation: Any, where: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of one type hint; `defs` collects the `$defs` of models, hoisted to the root."""
    annotation = _strip_annotated(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    # bool before int: bool is an int subclass.
    for py, json_type in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number")):
        if annotation is py:
            return {"type": json_type}
    if origin is Literal:
        return _enum_schema(list(args))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_schema([member.value for member in annotation])
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _schema(args[0], where, defs)}
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(f"{where}: dict keys must be str (JSON object keys), got {args[0]!r}")
        return {"type": "object", "additionalProperties": _schema(args[1], where, defs)}
    if _is_union(annotation):
        return {"anyOf": [_schema(a, where, defs) for a in args]}
    if annotation is type(None):
        return {"type": "null"}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _hoist_defs(annotation.model_json_schema(), where, defs)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) and annotation is not CallInfo:
        try:
            schema = pydantic.TypeAdapter(annotation).json_schema()
        except pydantic.PydanticUserError as exc:
            raise TypeError(f"{where}: {exc}") from exc
        return _hoist_defs(schema, where, defs)
    raise TypeError(f"{where}: unsupported type {annotation!r}; use {_SUPPORTED}")


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    for py, json_type in ((bool, "boolean"), (str, "string"), (int, "integer"), (float, "number")):
        # `type(v) is` keeps True out of an integer enum.
        if values and all(type(v) is py for v in values):
            return {"type": json_type, "enum": values}
    return {"enum": values}


def _hoist_defs(schema: dict[str, Any], where: str, defs: dict[str, Any]) -> dict[str, Any]:
    # Pydantic's `$ref`s point at `#/$defs/...` of the document root, which is the parameters object.
    for key, value in schema.pop("$defs", {}).items():
        if defs.setdefault(key, value) != value:
            raise TypeError(f"{where}: two different models are both named {key!r}")
    return schema

"""Function tools: the schema the model sees, the arguments it sends back, and what the runner answers."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import threading
from typing import Any, Literal

import pydantic
import pytest
from structlog.testing import capture_logs

from voicelive_sip.voicelive import CallInfo, Tool, ToolRunner, tool

CALL = CallInfo(
    call_id="call-1", caller="sip:alice@example.com", callee="sip:bot@example.com", direction="inbound"
)


class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(pydantic.BaseModel):
    """A postal address."""

    street: str
    zip_code: int | None = None


class Street(pydantic.BaseModel):
    name: str


class Delivery(pydantic.BaseModel):
    street: Street


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


def parameters(t: Tool[..., Any]) -> dict[str, Any]:
    schema = t.definition["parameters"]
    assert isinstance(schema, dict)
    return schema


def only_property(t: Tool[..., Any]) -> dict[str, Any]:
    (value,) = parameters(t)["properties"].values()
    assert isinstance(value, dict)
    return value


def error_of(output: str) -> dict[str, str]:
    body = json.loads(output)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message"}
    return dict(body["error"])


# --- definitions and schemas


def test_definition_of_the_readme_example() -> None:
    @tool
    async def order_status(order_id: str, include_items: bool = False) -> dict[str, object]:
        """Look up the status of an order.

        order_id: the order number the caller reads out
        """
        return {"order_id": order_id}

    assert isinstance(order_status, Tool)
    assert order_status.name == "order_status"
    assert order_status.description == "Look up the status of an order."
    assert order_status.definition == {
        "type": "function",
        "name": "order_status",
        "description": "Look up the status of an order.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "the order number the caller reads out"},
                "include_items": {"type": "boolean"},
            },
            "required": ["order_id"],
            "additionalProperties": False,
        },
    }


def test_scalar_schemas() -> None:
    @tool
    def f(s: str, i: int, x: float, b: bool) -> None:
        """Scalars."""

    assert parameters(f) == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
        },
        "required": ["s", "i", "x", "b"],
        "additionalProperties": False,
    }


def test_no_parameters() -> None:
    @tool
    def now() -> str:
        """The time."""
        return "noon"

    assert parameters(now) == {"type": "object", "properties": {}, "additionalProperties": False}


def test_literal_schemas() -> None:
    @tool
    def s(unit: Literal["c", "f"]) -> None:
        """Strings."""

    @tool
    def i(level: Literal[1, 2, 3]) -> None:
        """Integers."""

    @tool
    def mixed(v: Literal["a", 1]) -> None:
        """Mixed."""

    assert only_property(s) == {"type": "string", "enum": ["c", "f"]}
    assert only_property(i) == {"type": "integer", "enum": [1, 2, 3]}
    assert only_property(mixed) == {"enum": ["a", 1]}


def test_enum_schemas() -> None:
    @tool
    def s(unit: Unit) -> None:
        """A str enum."""

    @tool
    def i(priority: Priority) -> None:
        """An int enum."""

    assert only_property(s) == {"type": "string", "enum": ["c", "f"]}
    assert only_property(i) == {"type": "integer", "enum": [1, 2]}


def test_container_schemas() -> None:
    @tool
    def f(ids: list[int], prices: dict[str, float], grid: list[list[str]]) -> None:
        """Containers."""

    assert parameters(f)["properties"] == {
        "ids": {"type": "array", "items": {"type": "integer"}},
        "prices": {"type": "object", "additionalProperties": {"type": "number"}},
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
    }


def test_optional_is_not_required_and_nested_optional_is_nullable() -> None:
    @tool
    def f(name: str | None, tags: list[str | None] | None = None, unit: Unit | None = Unit.CELSIUS) -> None:
        """Optionals."""

    assert parameters(f) == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "additionalProperties": False,
    }


def test_union_schema() -> None:
    @tool
    def f(key: int | str) -> None:
        """A union."""

    assert only_property(f) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}


def test_pydantic_model_schema() -> None:
    @tool
    def f(address: Address) -> None:
        """Ship somewhere."""

    assert only_property(f) == Address.model_json_schema()


def test_nested_model_defs_are_hoisted_to_the_parameters_root() -> None:
    @tool
    def f(delivery: Delivery) -> None:
        """Deliver."""

    schema = parameters(f)
    assert schema["properties"]["delivery"]["properties"] == {"street": {"$ref": "#/$defs/Street"}}
    assert schema["$defs"] == {"Street": Street.model_json_schema()}


def test_dataclass_schema() -> None:
    @tool
    def f(point: Point) -> None:
        """A point."""

    assert only_property(f) == {
        "type": "object",
        "title": "Point",
        "properties": {
            "x": {"type": "number", "title": "X"},
            "y": {"type": "number", "title": "Y", "default": 0.0},
        },
        "required": ["x"],
    }


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        ("bytes", "unsupported type"),
        ("tuple[int, int]", "unsupported type"),
        ("list", "unsupported type"),
        ("Any", "unsupported type"),
        ("dict[int, str]", "dict keys must be str"),
        ("NoSuchType", "cannot resolve"),
    ],
)
def test_unsupported_annotations_fail_at_decoration(annotation: str, fragment: str) -> None:
    def f(value: Any) -> None:
        """Bad."""

    f.__annotations__["value"] = annotation
    with pytest.raises(TypeError, match=fragment) as info:
        tool(f)
    assert "'f'" in str(info.value)


def test_signatures_the_model_cannot_call_fail_at_decoration() -> None:
    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        """Untyped."""

    def star(*args: int) -> None:
        """Star."""

    def positional(x: int, /) -> None:
        """Positional."""

    def undocumented(x: int) -> None:
        pass

    with pytest.raises(TypeError, match="needs a type hint"):
        tool(untyped)
    with pytest.raises(TypeError, match="named parameters"):
        tool(star)
    with pytest.raises(TypeError, match="named parameters"):
        tool(positional)
    with pytest.raises(TypeError, match="docstring"):
        tool(undocumented)
    with pytest.raises(ValueError, match="name"):
        tool(name="has space", description="d")(undocumented)


def test_definition_is_a_copy() -> None:
    @tool
    def f(x: int) -> None:
        """X."""

    f.definition["parameters"]["properties"].clear()
    assert parameters(f)["properties"] == {"x": {"type": "integer"}}


# --- docstrings


def test_first_paragraph_is_the_description_and_param_lines_describe_parameters() -> None:
    @tool
    def f(city: str, unit: str = "c") -> None:
        """Get the weather
        for a city.

        Call this when the caller asks about the weather.

        city: the city name, as
            the caller said it
        unit: c or f
        """

    assert f.description == "Get the weather for a city."
    assert parameters(f)["properties"] == {
        "city": {"type": "string", "description": "the city name, as the caller said it"},
        "unit": {"type": "string", "description": "c or f"},
    }


def test_google_style_args_section() -> None:
    @tool
    def f(city: str, days: int = 1) -> None:
        """Forecast.

        Args:
            city (str): the city name,
                spelled out.
            days: how many days ahead.

        Returns:
            text: the forecast
        """

    assert parameters(f)["properties"] == {
        "city": {"type": "string", "description": "the city name, spelled out."},
        "days": {"type": "integer", "description": "how many days ahead."},
    }


def test_sphinx_param_lines() -> None:
    @tool
    def f(city: str) -> None:
        """Forecast.

        :param str city: the city name
        """

    assert parameters(f)["properties"] == {"city": {"type": "string", "description": "the city name"}}


def test_decorator_with_arguments() -> None:
    @tool(name="weather", description="Current weather for a city.", timeout=3.0)
    def get_weather(city: str, unit: Literal["c", "f"] = "c", call: CallInfo | None = None) -> str:
        """Ignored docstring."""
        return f"{city} 20{unit}"

    assert isinstance(get_weather, Tool)
    assert (get_weather.name, get_weather.description, get_weather.timeout) == (
        "weather",
        "Current weather for a city.",
        3.0,
    )
    assert get_weather.definition == {
        "type": "function",
        "name": "weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    # Still the function it wraps.
    assert get_weather("Oslo", "f") == "Oslo 20f"
    assert get_weather.__name__ == "get_weather"


async def test_decorated_async_function_is_still_awaitable() -> None:
    @tool
    async def echo(text: str) -> str:
        """Echo."""
        return text

    assert await echo("hi") == "hi"


# --- running


async def test_runner_definitions_and_lookup() -> None:
    @tool
    def a() -> None:
        """A."""

    @tool
    def b() -> None:
        """B."""

    runner = ToolRunner([a, b])
    assert runner.definitions == [a.definition, b.definition]
    assert runner.has("a") and not runner.has("c")
    with pytest.raises(ValueError, match="two tools"):
        ToolRunner([a, a])


async def test_arguments_are_validated_and_coerced() -> None:
    seen: list[tuple[Any, ...]] = []

    @tool
    async def f(order_id: str, count: int, unit: Unit, address: Address, point: Point, ids: list[int]) -> str:
        """Everything."""
        seen.append((order_id, count, unit, address, point, ids))
        return "ok"

    arguments = {
        "order_id": 1234,
        "count": "3",
        "unit": "f",
        "address": {"street": "Main St", "zip_code": "12345"},
        "point": {"x": 1},
        "ids": ["1", 2],
    }
    assert await ToolRunner([f]).run("f", json.dumps(arguments)) == "ok"
    assert seen == [
        ("1234", 3, Unit.FAHRENHEIT, Address(street="Main St", zip_code=12345), Point(1.0), [1, 2])
    ]


async def test_defaults_apply_when_arguments_are_left_out() -> None:
    @tool
    def f(a: int = 7, b: str | None = None) -> dict[str, Any]:
        """Defaults."""
        return {"a": a, "b": b}

    runner = ToolRunner([f])
    assert json.loads(await runner.run("f", "{}")) == {"a": 7, "b": None}
    assert json.loads(await runner.run("f", "")) == {"a": 7, "b": None}


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        ("{not json", ["not valid JSON"]),
        ("[1, 2]", ["JSON object", "list"]),
        ("{}", ["count: missing required argument"]),
        ('{"count": "many"}', ["count: Input should be a valid integer"]),
        ('{"count": 1, "unit": "k"}', ["unit: Input should be 'c' or 'f'"]),
        ('{"count": 1, "colour": "red"}', ["unknown argument(s): colour"]),
        ('{"count": 1, "address": {"zip_code": 1}}', ["address.street: Field required"]),
    ],
)
async def test_bad_arguments_are_a_structured_error(arguments: str, fragments: list[str]) -> None:
    ran = False

    @tool
    def f(count: int, unit: Literal["c", "f"] = "c", address: Address | None = None) -> None:
        """Count."""
        nonlocal ran
        ran = True

    error = error_of(await ToolRunner([f]).run("f", arguments))
    assert error["type"] == "invalid_arguments"
    for fragment in fragments:
        assert fragment in error["message"]
    assert not ran


async def test_unknown_tool() -> None:
    assert error_of(await ToolRunner([]).run("nope", "{}")) == {
        "type": "unknown_tool",
        "message": "there is no tool named 'nope'",
    }


async def test_call_info_is_injected_and_left_out_of_the_schema() -> None:
    @tool
    async def who(greeting: str, call: CallInfo) -> str:
        """Who is calling."""
        return f"{greeting} {call.caller} ({call.direction}, {call.call_id})"

    @tool
    def maybe(call: CallInfo | None = None) -> str:
        """Maybe a call."""
        return "none" if call is None else call.call_id

    assert parameters(who) == {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    }
    runner = ToolRunner([who, maybe])
    assert (
        await runner.run("who", '{"greeting": "hi"}', call=CALL)
        == "hi sip:alice@example.com (inbound, call-1)"
    )
    assert await runner.run("maybe", "{}", call=CALL) == "call-1"
    assert await runner.run("maybe", "{}") == "none"
    # The model cannot supply the call itself.
    assert error_of(await runner.run("maybe", '{"call": {"call_id": "x"}}'))["type"] == "invalid_arguments"
    # A tool that needs the call, run without one.
    assert error_of(await runner.run("who", '{"greeting": "hi"}'))["type"] == "invalid_arguments"


async def test_sync_tools_run_in_a_worker_thread() -> None:
    @tool
    def where() -> int:
        """The thread."""
        return threading.get_ident()

    assert json.loads(await ToolRunner([where]).run("where", "{}")) != threading.get_ident()


async def test_results_are_serialized_as_json() -> None:
    @tool
    def text() -> str:
        """Plain text is sent as is."""
        return "it is sunny"

    @tool
    def structured() -> dict[str, Any]:
        """Models, dataclasses and enums inside."""
        return {"address": Address(street="Main"), "point": Point(1.0), "unit": Unit.CELSIUS, "ids": {3}}

    @tool
    def model() -> Address:
        """A model."""
        return Address(street="Main", zip_code=1)

    @tool
    def nothing() -> None:
        """No result."""

    @tool
    def opaque() -> object:
        """Not JSON."""
        return object()

    runner = ToolRunner([text, structured, model, nothing, opaque])
    assert await runner.run("text", "{}") == "it is sunny"
    assert json.loads(await runner.run("structured", "{}")) == {
        "address": {"street": "Main", "zip_code": None},
        "point": {"x": 1.0, "y": 0.0},
        "unit": "c",
        "ids": [3],
    }
    assert json.loads(await runner.run("model", "{}")) == {"street": "Main", "zip_code": 1}
    assert await runner.run("nothing", "{}") == "null"
    assert error_of(await runner.run("opaque", "{}"))["type"] == "invalid_result"


async def test_oversized_result_is_an_error() -> None:
    @tool
    def big() -> str:
        """Big."""
        return "x" * 101

    runner = ToolRunner([big], max_output_chars=100)
    assert error_of(await runner.run("big", "{}"))["type"] == "output_too_large"


async def test_exception_becomes_a_structured_error_and_is_logged_without_arguments() -> None:
    @tool
    async def lookup(account: str) -> str:
        """Look up an account."""
        raise LookupError(f"no account {account}")

    with capture_logs() as logs:
        output = await ToolRunner([lookup]).run("lookup", '{"account": "SECRET-42"}', call=CALL)
    assert error_of(output) == {"type": "tool_error", "message": "LookupError: no account SECRET-42"}
    failed = [e for e in logs if e["event"] == "voicelive.tool_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "warning"
    assert (failed[0]["name"], failed[0]["call_id"], failed[0]["error"]) == ("lookup", "call-1", "tool_error")
    assert failed[0]["duration_ms"] >= 0
    loud = [e for e in logs if e["log_level"] in ("info", "warning", "error")]
    assert "SECRET-42" not in repr(loud)


async def test_success_is_logged_without_arguments() -> None:
    @tool
    def greet(name: str) -> str:
        """Greet."""
        return "hello"

    with capture_logs() as logs:
        await ToolRunner([greet]).run("greet", '{"name": "PRIVATE"}', call=CALL)
    assert [(e["event"], e["log_level"], e["name"], e["call_id"]) for e in logs] == [
        ("voicelive.tool_call", "info", "greet", "call-1")
    ]
    assert logs[0]["duration_ms"] >= 0
    assert "PRIVATE" not in repr(logs)


async def test_async_tool_timeout() -> None:
    never = asyncio.Event()
    cancelled = asyncio.Event()

    @tool(timeout=0.01)
    async def hang() -> None:
        """Hang."""
        try:
            await never.wait()
        finally:
            cancelled.set()

    error = error_of(await ToolRunner([hang], timeout=60).run("hang", "{}"))
    assert error["type"] == "timeout"
    assert "0.01 s" in error["message"]
    assert cancelled.is_set()


async def test_runner_timeout_applies_to_sync_tools() -> None:
    release = threading.Event()

    @tool
    def block() -> str:
        """Block."""
        release.wait()
        return "done"

    try:
        assert error_of(await ToolRunner([block], timeout=0.01).run("block", "{}"))["type"] == "timeout"
    finally:
        release.set()


async def test_timeout_error_raised_by_the_tool_is_a_tool_error() -> None:
    @tool
    async def upstream() -> None:
        """Upstream timed out."""
        raise TimeoutError("upstream")

    assert error_of(await ToolRunner([upstream]).run("upstream", "{}")) == {
        "type": "tool_error",
        "message": "TimeoutError: upstream",
    }


async def test_concurrency_is_limited() -> None:
    gate = asyncio.Event()
    two_running = asyncio.Event()
    running = 0
    peak = 0

    @tool
    async def slow(i: int) -> int:
        """Slow."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 2:
            two_running.set()
        await gate.wait()
        running -= 1
        return i

    runner = ToolRunner([slow], max_concurrent=2)
    tasks = [asyncio.create_task(runner.run("slow", json.dumps({"i": i}))) for i in range(5)]
    await two_running.wait()
    for _ in range(10):
        await asyncio.sleep(0)
    assert running == 2
    gate.set()
    assert await asyncio.gather(*tasks) == ["0", "1", "2", "3", "4"]
    assert peak == 2


async def test_runs_proceed_at_once() -> None:
    both = asyncio.Event()
    arrived = 0

    @tool
    async def meet() -> str:
        """Both must be running for either to finish."""
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await both.wait()
        return "met"

    runner = ToolRunner([meet], max_concurrent=2)
    assert list(await asyncio.gather(runner.run("meet", "{}"), runner.run("meet", "{}"))) == ["met", "met"]

"""Agent profiles: named agents (a model or a Foundry agent, voice, greeting, tools, transfer targets,
recording) and the routing rules that give each incoming call one of them (called number, request-URI user,
From, a header such as X-Agent, source address), from a TOML file (`GATEWAY_PROFILES_FILE`) or Python.

Errors name the file and the line: a file that does not load never half-applies.
"""

from __future__ import annotations

import fnmatch
import importlib
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .config import ConfigError, GatewaySettings, Settings, VoiceLiveSettings
from .targets import TargetPattern
from .voicelive.tools import Tool

if TYPE_CHECKING:
    from .aio import IncomingCall

__all__ = [
    "AgentProfile",
    "CallFacts",
    "ProfileError",
    "Profiles",
    "ResolvedProfile",
    "Route",
    "load_profiles",
]

MAX_FILE_BYTES = 1 << 20  # a routing table, not a database
MAX_PROFILES = 1000
MAX_ROUTES = 10_000

# Profile keys with a name of their own in the file -> the VoiceLiveSettings field they set.
_SHORTHANDS = {
    "model": "model",
    "agent": "agent_name",
    "project": "agent_project",
    "agent_version": "agent_version",
    "instructions": "instructions",
    "voice": "voice",
    "language": "transcription_language",
    "transcription": "transcription_model",
    "turn_detection": "vad_type",
}
_PROFILE_KEYS = frozenset({*_SHORTHANDS, "greeting", "tools", "transfer", "recording", "voicelive"})
# Credentials and where the service is stay in the environment: a routing file holds no secrets.
_NOT_PER_PROFILE = frozenset({"endpoint", "api_key", "api_version", "credential_scope"})
_ROUTE_KEYS = frozenset({"profile", "called", "uri_user", "from", "header", "value", "source"})
_AGENT_FIELDS = ("agent_name", "agent_project", "agent_version", "agent_conversation_id")


class ProfileError(ConfigError):
    """A profiles file or profile that cannot be used; each problem names the file and line where known."""


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What routing looks at in an incoming call."""

    called: str  # user part (or number) of the To URI: the number the caller dialled
    uri_user: str  # user part of the request URI (where a PBX routes by contact or DID)
    caller: str  # user part of the From URI
    source: str  # the address the INVITE came from
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # lower-case name -> values

    @classmethod
    def of(cls, call: IncomingCall, header_names: Iterable[str] = ()) -> CallFacts:
        """The facts of `call`; `header_names`: the headers some route looks at."""
        request = call.request
        headers = {name.lower(): tuple(request.headers.get_all(name)) for name in header_names}
        return cls(
            called=_user(request.to.uri),
            uri_user=_user(request.uri),
            caller=_user(request.from_.uri),
            source=call.source[0],
            headers=headers,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """Send calls matching every condition given to `profile`; patterns take `*` and `?` (shell style)."""

    profile: str
    called: str | None = None
    uri_user: str | None = None
    caller: str | None = None  # `from` in the file
    header: str | None = None
    value: str = "*"  # the header's value (with `header`)
    source: str | None = None  # an address or network (CIDR)
    line: int | None = None

    def __post_init__(self) -> None:
        if not any((self.called, self.uri_user, self.caller, self.header, self.source)):
            raise ValueError("a route needs a condition (called, uri_user, from, header or source)")
        if self.source is not None:
            ipaddress.ip_network(self.source, strict=False)  # ValueError names the bad address

    def matches(self, call: CallFacts) -> bool:
        """Whether `call` meets every condition of this route."""
        if self.called is not None and not _glob(call.called, self.called):
            return False
        if self.uri_user is not None and not _glob(call.uri_user, self.uri_user):
            return False
        if self.caller is not None and not _glob(call.caller, self.caller):
            return False
        if self.header is not None:
            values = call.headers.get(self.header.lower(), ())
            if not any(_glob(value.strip(), self.value, case=False) for value in values):
                return False
        if self.source is not None:
            try:
                address = ipaddress.ip_address(call.source)
            except ValueError:
                return False
            if address not in ipaddress.ip_network(self.source, strict=False):
                return False
        return True

    def describe(self) -> str:
        """The conditions, as the routing table shows them."""
        parts = [
            f"called={self.called}" if self.called is not None else "",
            f"uri_user={self.uri_user}" if self.uri_user is not None else "",
            f"from={self.caller}" if self.caller is not None else "",
            f"{self.header}: {self.value}" if self.header is not None else "",
            f"source={self.source}" if self.source is not None else "",
        ]
        return " and ".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """One agent: Voice Live settings over the gateway's own, its tools, transfer targets and recording.

    `voicelive`: VoiceLiveSettings fields by name (model or agent_name/agent_project, instructions, voice,
    proactive_greeting, vad_type...). `tools`: `@tool` functions, names of the gateway's tools, or
    `module:attribute` import paths. `transfer`: allowed transfer targets (turns the transfer tool on; empty
    turns it off); `recording`: on or off (None: as GATEWAY_RECORDING_DIR says).
    """

    name: str
    voicelive: Mapping[str, Any] = field(default_factory=dict)
    tools: Sequence[str | Tool[..., Any]] = ()
    transfer: Sequence[str] | None = None
    recording: bool | None = None
    line: int | None = None
    lines: Mapping[str, int] = field(default_factory=dict)  # VoiceLiveSettings field -> line it was set on


@dataclass(frozen=True, slots=True)
class ResolvedProfile:
    """A profile made concrete against the gateway: the call's settings and exactly its tools."""

    profile: AgentProfile
    settings: Settings
    tools: tuple[Tool[..., Any], ...]

    @property
    def name(self) -> str:
        return self.profile.name


class Profiles:
    """Named profiles, routes tried in order (the first whose conditions all hold wins) and a default."""

    def __init__(
        self,
        profiles: Iterable[AgentProfile],
        routes: Sequence[Route] = (),
        *,
        default: str | None = None,
        source: str | None = None,
    ) -> None:
        self.profiles: dict[str, AgentProfile] = {}
        self.source = source  # the file it came from, for messages
        problems: list[str] = []
        for profile in profiles:
            if profile.name in self.profiles:
                problems.append(self._where(profile.line) + f"two profiles are named {profile.name!r}")
            self.profiles[profile.name] = profile
        self.routes = list(routes)
        self.default = default
        for route in self.routes:
            if route.profile not in self.profiles:
                problems.append(self._where(route.line) + f"route to unknown profile {route.profile!r}")
        if default is not None and default not in self.profiles:
            problems.append(self._where(None) + f"default: unknown profile {default!r}")
        if problems:
            raise ProfileError(problems)

    def _where(self, line: int | None) -> str:
        if self.source is None:
            return "" if line is None else f"line {line}: "
        return f"{self.source}:{line}: " if line is not None else f"{self.source}: "

    @property
    def header_names(self) -> tuple[str, ...]:
        """The headers some route looks at (only these are read from each INVITE)."""
        return tuple(dict.fromkeys(route.header for route in self.routes if route.header is not None))

    def route(self, call: CallFacts) -> tuple[str | None, Route | None]:
        """The profile name for `call` and the route that chose it (None: the default; None, None: none)."""
        for route in self.routes:
            if route.matches(call):
                return route.profile, route
        return self.default, None

    def table(self) -> list[str]:
        """The routing table, one line per rule, in the order they are tried."""
        lines = [f"{n}. {route.describe()} -> {route.profile}" for n, route in enumerate(self.routes, 1)]
        lines.append(f"*. otherwise -> {self.default or '(the gateway settings, no profile)'}")
        return lines

    def resolve(
        self, base: Settings, tools: Mapping[str, Tool[..., Any]] | None = None
    ) -> dict[str, ResolvedProfile]:
        """Every profile as the settings and tools of its calls; `tools`: the gateway's, by name (None: names
        are not checked, only import paths). Raises `ProfileError` listing every problem."""
        resolved: dict[str, ResolvedProfile] = {}
        problems: list[str] = []
        for profile in self.profiles.values():
            try:
                resolved[profile.name] = self._resolve(profile, base, tools)
            except ProfileError as error:
                problems += error.problems
        if problems:
            raise ProfileError(problems)
        return resolved

    def _resolve(
        self, profile: AgentProfile, base: Settings, known: Mapping[str, Tool[..., Any]] | None
    ) -> ResolvedProfile:
        where = f"profile {profile.name!r}: "
        problems: list[str] = []
        values = base.voicelive.model_dump()
        overrides = dict(profile.voicelive)
        if "model" in overrides or "agent_name" in overrides:
            # A profile on a model is not also on the environment's agent, and the other way round.
            for name in (*_AGENT_FIELDS, "model"):
                if name not in overrides:
                    values[name] = VoiceLiveSettings.model_fields[name].default
        for name in overrides:
            if name not in VoiceLiveSettings.model_fields or name in _NOT_PER_PROFILE:
                line = profile.lines.get(name, profile.line)
                problems.append(self._where(line) + where + f"{name} cannot be set per profile")
        voicelive: VoiceLiveSettings | None = None
        if not problems:
            try:
                voicelive = VoiceLiveSettings.model_validate({**values, **overrides})
            except ValidationError as error:
                for item in error.errors():
                    name = str(item["loc"][0]) if item["loc"] else ""
                    line = profile.lines.get(name, profile.line)
                    problems.append(self._where(line) + where + f"{name}: {item['msg']}")
        if voicelive is not None and voicelive.is_agent and not voicelive.agent_project:
            line = profile.lines.get("agent_name", profile.line)
            problems.append(self._where(line) + where + "an agent needs its project (project = ...)")
        gateway_values: dict[str, Any] = {}
        if profile.transfer is not None:
            for text in profile.transfer:
                try:
                    TargetPattern.parse(text)
                except Exception as error:
                    problems.append(self._where(profile.lines.get("transfer", profile.line)) + where
                                    + f"transfer target {text!r}: {error}")  # fmt: skip
            gateway_values.update(
                transfer_tool=bool(profile.transfer), transfer_allowed=list(profile.transfer)
            )
        if profile.recording is not None:
            if profile.recording and not base.gateway.recording_dir:
                problems.append(self._where(profile.lines.get("recording", profile.line)) + where
                                + "recording = true needs GATEWAY_RECORDING_DIR")  # fmt: skip
            gateway_values["recording_dir"] = base.gateway.recording_dir if profile.recording else None
        tools, tool_problems = _tools(profile.tools, known)
        problems += [self._where(profile.lines.get("tools", profile.line)) + where + p for p in tool_problems]
        if problems or voicelive is None:
            raise ProfileError(problems)
        gateway = base.gateway
        if gateway_values:
            gateway = GatewaySettings.model_validate({**gateway.model_dump(), **gateway_values})
        settings = base.model_copy(update={"voicelive": voicelive, "gateway": gateway})
        return ResolvedProfile(profile, settings, tuple(tools))


def _tools(
    entries: Sequence[str | Tool[..., Any]], known: Mapping[str, Tool[..., Any]] | None
) -> tuple[list[Tool[..., Any]], list[str]]:
    tools: list[Tool[..., Any]] = []
    problems: list[str] = []
    for entry in entries:
        if isinstance(entry, Tool):
            tools.append(entry)
        elif ":" in entry:
            found, problem = _import_tools(entry)
            tools += found
            if problem:
                problems.append(problem)
        elif known is None:
            continue  # checked when the gateway starts with its tools
        elif entry in known:
            tools.append(known[entry])
        else:
            names = ", ".join(sorted(known)) or "none"
            problems.append(f"tool {entry!r} is not one of the gateway's @tool functions ({names}) "
                            "nor a module:attribute")  # fmt: skip
    seen: set[str] = set()
    for t in tools:
        if t.name in seen:
            problems.append(f"two tools are named {t.name!r}")
        seen.add(t.name)
    return tools, problems


def _import_tools(spec: str) -> tuple[list[Tool[..., Any]], str | None]:
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        return [], f"tool {spec!r}: cannot import it ({error})"
    if isinstance(target, Tool):
        return [target], None
    if isinstance(target, list | tuple) and target and all(isinstance(t, Tool) for t in target):
        return list(target), None
    return [], f"tool {spec!r} is a {type(target).__name__}, not a @tool function or a list of them"


def _user(uri: object) -> str:
    user = getattr(uri, "user", None)
    if user is None:
        user = getattr(uri, "number", None)  # tel: URIs
    return str(user or "")


def _glob(text: str, pattern: str, *, case: bool = True) -> bool:
    if not case:
        text, pattern = text.lower(), pattern.lower()
    return fnmatch.fnmatchcase(text, pattern)


# -- the file ------------------------------------------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY_RE = re.compile(r"""^\s*("?)([A-Za-z0-9_-]+)\1\s*=""")


class _Lines:
    """Where tables and keys are in the TOML text (tomllib reports lines only for syntax errors)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, tuple[str, ...], bool]] = []
        for number, line in enumerate(self.lines, 1):
            m = _HEADER_RE.match(line)
            if m:
                path = tuple(part.strip().strip("\"'") for part in m.group(2).split("."))
                self.headers.append((number, path, m.group(1) == "[["))

    def table(self, path: tuple[str, ...], index: int = 0) -> int | None:
        """Line of the header of table `path` (`index`: which one, for arrays of tables)."""
        found = [number for number, p, _ in self.headers if p == path]
        return found[index] if index < len(found) else None

    def key(self, key: str, table: int | None) -> int | None:
        """Line of `key` in the table whose header is on line `table` (None: the top of the file)."""
        start = table or 0
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if number != start and _HEADER_RE.match(line):
                break
            m = _KEY_RE.match(line)
            if m and m.group(2) == key:
                return number
        return table


def load_profiles(path: str | Path) -> Profiles:
    """Read a profiles file; `ProfileError` names the file and line of every problem found."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProfileError([f"{path}: cannot read it ({error.strerror or error})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ProfileError([f"{path}: larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
        document = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise ProfileError([f"{path}: not UTF-8 ({error.reason})"]) from None
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(error))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        line = f"{found.group(1)}:" if found else ""
        raise ProfileError([f"{path}:{line} {message}"]) from None
    return parse_profiles(document, _Lines(text), str(path))


def parse_profiles(
    document: Mapping[str, Any], lines: _Lines | None = None, source: str | None = None
) -> Profiles:
    """Profiles from a parsed TOML document (`lines`: where things are in its text, for messages)."""
    lines = lines or _Lines("")
    problems: list[str] = []

    def at(line: int | None, message: str) -> None:
        problems.append(f"{source}:{line}: {message}" if line is not None else f"{source}: {message}")

    for key in document:
        if key not in ("profiles", "routes", "default"):
            at(lines.key(key, None), f"unknown key {key!r} (expected profiles, routes, default)")
    raw_profiles = document.get("profiles", {})
    profiles: list[AgentProfile] = []
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        at(lines.table(("profiles",)), "no profiles: add [profiles.NAME] tables")
        raw_profiles = {}
    if len(raw_profiles) > MAX_PROFILES:
        at(None, f"more than {MAX_PROFILES} profiles")
        raw_profiles = {}
    for name, body in raw_profiles.items():
        header = lines.table(("profiles", name))
        if not isinstance(body, dict):
            at(lines.key(name, lines.table(("profiles",))), f"profiles.{name} must be a table")
            continue
        profile, found = _profile(name, body, lines, header)
        for line, message in found:
            at(line, f"profile {name!r}: {message}")
        if profile is not None:
            profiles.append(profile)
    raw_routes = document.get("routes", [])
    routes: list[Route] = []
    if not isinstance(raw_routes, list) or len(raw_routes) > MAX_ROUTES:
        at(lines.key("routes", None), f"routes must be [[routes]] tables (at most {MAX_ROUTES})")
        raw_routes = []
    for index, body in enumerate(raw_routes):
        header = lines.table(("routes",), index)
        if not isinstance(body, dict):
            at(header, "each route must be a table")
            continue
        unknown = sorted(set(body) - _ROUTE_KEYS)
        if unknown:
            at(lines.key(unknown[0], header), f"route: unknown key {unknown[0]!r} "
               f"(expected {', '.join(sorted(_ROUTE_KEYS))})")  # fmt: skip
            continue
        if not all(isinstance(value, str) for value in body.values()):
            bad = next(key for key, value in body.items() if not isinstance(value, str))
            at(lines.key(bad, header), f"route: {bad} must be a string")
            continue
        if "profile" not in body:
            at(header, "route: no profile = ...")
            continue
        try:
            routes.append(
                Route(
                    profile=body["profile"],
                    called=body.get("called"),
                    uri_user=body.get("uri_user"),
                    caller=body.get("from"),
                    header=body.get("header"),
                    value=body.get("value", "*"),
                    source=body.get("source"),
                    line=lines.key("profile", header),
                )
            )
        except ValueError as error:
            at(lines.key("source", header) if "source" in body else header, f"route: {error}")
    default = document.get("default")
    if default is not None and not isinstance(default, str):
        at(lines.key("default", None), "default must be a profile name")
        default = None
    if problems:
        raise ProfileError(problems)
    try:
        return Profiles(profiles, routes, default=default, source=source)
    except ProfileError as error:
        if default is not None and any("default: unknown profile" in p for p in error.problems):
            line = lines.key("default", None)
            error.problems = [
                p.replace(f"{source}: default", f"{source}:{line}: default") for p in error.problems
            ]
        raise ProfileError(error.problems) from None


def _profile(
    name: str, body: Mapping[str, Any], lines: _Lines, header: int | None
) -> tuple[AgentProfile | None, list[tuple[int | None, str]]]:
    found: list[tuple[int | None, str]] = []
    voicelive: dict[str, Any] = {}
    where: dict[str, int] = {}
    for key, value in body.items():
        line = lines.key(key, header)
        if key not in _PROFILE_KEYS:
            found.append((line, f"unknown key {key!r} (expected {', '.join(sorted(_PROFILE_KEYS))})"))
        elif key in _SHORTHANDS:
            voicelive[_SHORTHANDS[key]] = value
            where[_SHORTHANDS[key]] = line or 0
    if "model" in body and "agent" in body:
        found.append((lines.key("agent", header), "either model or agent, not both"))
    greeting = body.get("greeting")
    if greeting is not None:
        line = lines.key("greeting", header)
        if greeting is False:
            voicelive["proactive_greeting_enabled"] = False
        elif isinstance(greeting, str):
            voicelive.update(proactive_greeting_enabled=True, proactive_greeting=greeting)
            where["proactive_greeting"] = line or 0
        else:
            found.append((line, 'greeting must be text ("": the agent\'s own words) or false'))
    extra = body.get("voicelive", {})
    extra_header = lines.table(("profiles", name, "voicelive"))
    if not isinstance(extra, dict):
        found.append((lines.key("voicelive", header), "voicelive must be a table of VOICE_LIVE_* fields"))
        extra = {}
    for key, value in extra.items():
        voicelive[key] = value
        where[key] = lines.key(key, extra_header) or 0
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        found.append((lines.key("tools", header), "tools must be a list of tool names or module:attribute"))
        tools = []
    transfer = body.get("transfer")
    if transfer is not None and (
        not isinstance(transfer, list) or not all(isinstance(t, str) for t in transfer)
    ):
        found.append((lines.key("transfer", header), "transfer must be a list of target patterns"))
        transfer = None
    recording = body.get("recording")
    if recording is not None and not isinstance(recording, bool):
        found.append((lines.key("recording", header), "recording must be true or false"))
        recording = None
    for key in ("tools", "transfer", "recording"):
        if key in body:
            where[key] = lines.key(key, header) or 0
    if found:
        return None, found
    profile = AgentProfile(
        name=name,
        voicelive=voicelive,
        tools=tuple(tools),
        transfer=tuple(transfer) if transfer is not None else None,
        recording=recording,
        line=header,
        lines={key: line for key, line in where.items() if line},
    )
    return profile, found

"""The layering of docs/architecture.md, checked: what each layer may import, no cycles, a light SIP core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voicelive_sip"
HEAVY = ("azure", "aiohttp", "numpy", "pydantic", "pydantic_settings", "soxr", "av", "aiortc")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module loads: top level, inside try/if, not under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                targets = [origin]
                targets += [f"{origin}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
                    # Importing a.b.c first runs a/b/__init__.py, unless the importer is already inside a.b.
                    parts = target.split(".")
                    for depth in range(1, len(parts)):
                        package = ".".join(parts[:depth])
                        inside = name == package or name.startswith(package + ".")
                        if package in modules and not inside:
                            graph[name].add(package)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    assert graph.get("voicelive_sip.aio.agent")  # the walk sees imports
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Which layer may import which (docs/architecture.md): a package prefix -> prefixes it must not import.
FORBIDDEN = {
    "voicelive_sip.sip": (
        "voicelive_sip.aio",
        "voicelive_sip.config",
        "voicelive_sip.rtp",
        "voicelive_sip.voicelive",
        "voicelive_sip.bridge",
        "voicelive_sip.gateway",
        "voicelive_sip.testing",
    ),
    "voicelive_sip.sdp": ("voicelive_sip.aio", "voicelive_sip.config", "voicelive_sip.voicelive"),
    "voicelive_sip.aio": (
        "voicelive_sip.config",
        "voicelive_sip.rtp",
        "voicelive_sip.voicelive",
        "voicelive_sip.bridge",
        "voicelive_sip.gateway",
        "voicelive_sip.testing",
    ),
    # The media layers take plain values, never the settings models (only the product layer reads them).
    "voicelive_sip.rtp": (
        "voicelive_sip.aio",
        "voicelive_sip.sip",
        "voicelive_sip.voicelive",
        "voicelive_sip.config",
    ),
    "voicelive_sip.codecs": (
        "voicelive_sip.aio",
        "voicelive_sip.sip",
        "voicelive_sip.rtp",
        "voicelive_sip.config",
    ),
    "voicelive_sip.media": (
        "voicelive_sip.aio",
        "voicelive_sip.sip",
        "voicelive_sip.config",
        "voicelive_sip.bridge",
    ),
    "voicelive_sip.voicelive": ("voicelive_sip.sip", "voicelive_sip.aio", "voicelive_sip.bridge"),
    "voicelive_sip.config": ("voicelive_sip.bridge", "voicelive_sip.gateway"),
    "voicelive_sip.bridge": ("voicelive_sip.cli",),
    "voicelive_sip.gateway": ("voicelive_sip.cli",),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    graph = _graph()
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == bad or target.startswith(bad + ".") for bad in FORBIDDEN[layer])
    )
    assert wrong == []


def test_the_sip_core_never_imports_asyncio() -> None:
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in (PACKAGE / "sip").rglob("*.py")
        if any(
            alias.name.split(".")[0] == "asyncio"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        )
    ]
    assert offenders == []


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_importing_the_sip_core_loads_no_sdk_aiohttp_numpy_or_pydantic() -> None:
    loaded = _loaded_after(
        "import voicelive_sip.sip, voicelive_sip.sip.transaction, voicelive_sip.sip.session_timer, "
        "voicelive_sip.sip.binding, voicelive_sip.sip.uas, voicelive_sip.sip.call_state, voicelive_sip.sdp"
    )
    assert "voicelive_sip.sip.transaction" in loaded  # the probe really imported the core
    assert sorted(m for m in loaded if m.split(".")[0] in (*HEAVY, "asyncio")) == []


def test_the_asyncio_user_agent_loads_no_sdk_numpy_or_pydantic() -> None:
    loaded = _loaded_after("import voicelive_sip.aio")
    assert "asyncio" in loaded and "voicelive_sip.aio.agent" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []


def test_the_product_layer_still_loads_everything_it_needs() -> None:
    loaded = _loaded_after("from voicelive_sip import Gateway, CallSession, Settings")
    assert {"voicelive_sip.gateway", "voicelive_sip.bridge", "pydantic", "azure.ai.voicelive"} <= loaded


def test_no_module_of_the_asyncio_layer_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in (PACKAGE / "aio").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert long == {}


def test_every_error_the_library_defines_has_one_root() -> None:
    import importlib
    import inspect

    from voicelive_sip.errors import LocalProtocolError, RemoteProtocolError, VoiceLiveSipError

    errors = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = importlib.import_module(_module_name(path))
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                errors[f"{module.__name__}.{name}"] = value
    assert "voicelive_sip.errors.SipParseError" in errors and len(errors) > 15
    assert sorted(name for name, cls in errors.items() if not issubclass(cls, VoiceLiveSipError)) == []
    from voicelive_sip.rtp.packet import RtpParseError
    from voicelive_sip.sdp import SdpError
    from voicelive_sip.sip import SipParseError
    from voicelive_sip.sip.transaction import TransactionLimitReached

    assert all(issubclass(cls, RemoteProtocolError) for cls in (SipParseError, SdpError, RtpParseError))
    assert issubclass(TransactionLimitReached, LocalProtocolError)


def test_no_two_modules_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE.parent)))
    assert len(names) > 40
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}

"""The package's shape: a lazy front door, the walls between agent and analyzer, the contract."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import amqadf_agent
from amqadf_agent import semconv

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "amqadf_agent"


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    return result.stdout


def test_all_is_sorted_complete_and_every_name_resolves() -> None:
    assert amqadf_agent.__all__ == sorted(amqadf_agent.__all__)
    public = {name for name in amqadf_agent._LAZY} | {"__version__"}
    assert set(amqadf_agent.__all__) == public
    for name in amqadf_agent.__all__:
        assert getattr(amqadf_agent, name) is not None


def test_each_public_name_comes_from_one_module_of_the_table() -> None:
    listed = [name for names in amqadf_agent._EXPORTS.values() for name in names]
    assert len(listed) == len(set(listed)), "a name listed under two modules"
    for module, names in amqadf_agent._EXPORTS.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is getattr(amqadf_agent, name)


def test_type_checkers_see_the_names_of_the_table() -> None:
    # Type checkers cannot read _EXPORTS: the TYPE_CHECKING block says the same in imports, each
    # re-exported as ``X as X``, since a computed __all__ means nothing to mypy strict.
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    imported: dict[str, list[str]] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.dump(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
            imported.setdefault(node.module, []).append(alias.name)
    assert {m: sorted(n) for m, n in imported.items()} == {
        m: sorted(n) for m, n in amqadf_agent._EXPORTS.items()
    }


def test_the_names_users_start_with_import_from_the_package() -> None:
    # Users' first lines (README, docs/ examples): these names must stay importable from the
    # top level, whatever the modules behind them become.
    promised = [
        "start",
        "shutdown",
        "ProductionConfig",
        "RetryPolicy",
        "retry_with_policy",
        "CircuitBreaker",
        "GracefulDegradation",
        "RateLimiter",
        "timeout",
        "LoadBalancer",
        "AutoScaler",
        "ScalingMetrics",
        "ResourceMonitor",
        "PerformanceProfiler",
        "PerformanceTuner",
        "InstrumentedThreadPoolExecutor",
    ]
    code = "; ".join(f"from amqadf_agent import {name}" for name in promised)
    _run(code + "; print('ok')")  # a fresh interpreter: the lazy imports resolve for real
    for name in promised:
        assert name in amqadf_agent.__all__, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = amqadf_agent.nope  # type: ignore[attr-defined]


def test_version_is_the_installed_distributions() -> None:
    # The resource's telemetry.distro.version reads __version__, not the (slow) package metadata.
    from importlib import metadata

    assert amqadf_agent.__version__ == metadata.version("amqadf-agent")


def test_importing_the_package_imports_neither_the_sdk_nor_psutil() -> None:
    out = _run(
        "import sys, amqadf_agent; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'psutil', 'orjson'))))"
    )
    assert out.strip() == "[]"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the file's package
                base = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                found.add(".".join((*base, node.module)))
            else:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


ANALYZER_MAY_IMPORT = (
    "amqadf_agent.semconv",
    "amqadf_agent.errors",
    "amqadf_agent.statements",
    "amqadf_agent.redaction",
    "amqadf_agent.scaling.autoscaler",
)


def test_the_analyzer_imports_only_the_contract_and_errors_of_the_package() -> None:
    files = [*sorted((PACKAGE / "analyzer").rglob("*.py")), PACKAGE / "cli" / "analyze.py"]
    assert len(files) >= 4
    for path in files:
        for module in _imports(path):
            if module.startswith("amqadf_agent") and module != "amqadf_agent":
                allowed = module.startswith(("amqadf_agent.analyzer", *ANALYZER_MAY_IMPORT))
                assert allowed, f"{path.relative_to(ROOT)} imports {module}"
            assert not module.startswith(("psutil", "opentelemetry.sdk", "opentelemetry.exporter")), (
                f"{path.relative_to(ROOT)} imports {module}"
            )
            assert module not in ("opentelemetry.trace", "opentelemetry.metrics"), path


CONFIG_MAY_IMPORT = ("amqadf_agent.config.", "amqadf_agent.errors", "amqadf_agent.redaction")


def test_the_config_package_imports_nothing_above_it() -> None:
    # runtime/, resilience/ and cli/ build on config/ (the one settings table); an import from
    # config/ back up to them, even inside a function, would make the layers a cycle.
    files = sorted((PACKAGE / "config").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for module in _imports(path):
            if module.startswith("amqadf_agent.") and module != "amqadf_agent.config":
                assert module.startswith(CONFIG_MAY_IMPORT), f"{path.relative_to(ROOT)} imports {module}"


def test_semconv_imports_nothing_of_the_package_and_no_otel_api() -> None:
    for module in _imports(PACKAGE / "semconv.py"):
        assert not module.startswith("amqadf_agent"), module
        assert module.startswith(("opentelemetry.semconv", "__future__", "dataclasses", "typing")), module


def test_importing_semconv_loads_no_otel_api_or_sdk() -> None:
    out = _run(
        "import sys, amqadf_agent.semconv; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.') "
        "and not m.startswith('opentelemetry.semconv')))"
    )
    assert out.strip() == "[]"


def test_contract_names_are_unique_and_well_formed() -> None:
    names = [inst.name for inst in semconv.INSTRUMENTS]
    assert len(names) == len(set(names))
    for inst in semconv.INSTRUMENTS:
        assert inst.standard == (not inst.name.startswith("amqadf.")), inst.name
        if inst.kind == "histogram" and inst.unit == "s":
            assert inst.buckets == semconv.SECONDS_BUCKETS, inst.name
        assert inst.emitted_by and inst.read_by and inst.description
        # process.* and the CPU count carry none
        assert inst.attributes or inst.name.startswith(("process.", "system.cpu.logical")), inst.name


# Standard names are written out in semconv (their library modules import the metrics API);
# here each one is checked against the library's own constant.
STANDARD_CONSTANTS = {
    name: (module, name.upper().replace(".", "_"))
    for module, names in {
        "opentelemetry.semconv._incubating.metrics.db_metrics": (
            "db.client.connection.max",
            "db.client.connection.count",
            "db.client.connection.wait_time",
        ),
        "opentelemetry.semconv.metrics.db_metrics": ("db.client.operation.duration",),
        "opentelemetry.semconv.metrics.http_metrics": ("http.server.request.duration",),
        "opentelemetry.semconv._incubating.metrics.otel_metrics": (
            "otel.sdk.processor.span.processed",
            "otel.sdk.processor.span.queue.size",
            "otel.sdk.processor.span.queue.capacity",
            "otel.sdk.processor.log.processed",
            "otel.sdk.processor.log.queue.size",
            "otel.sdk.processor.log.queue.capacity",
        ),
        "opentelemetry.semconv._incubating.metrics.system_metrics": (
            "system.cpu.utilization",
            "system.cpu.logical.count",
            "system.memory.usage",
            "system.memory.utilization",
            "system.filesystem.usage",
            "system.filesystem.utilization",
            "system.disk.io",
            "system.network.io",
        ),
        "opentelemetry.semconv._incubating.metrics.process_metrics": (
            "process.cpu.utilization",
            "process.cpu.time",
            "process.memory.usage",
            "process.memory.virtual",
            "process.thread.count",
            "process.unix.file_descriptor.count",
        ),
    }.items()
    for name in names
}


# Incubating attribute keys are written out in semconv (their modules cost start-up time).
INCUBATING_ATTRIBUTES = {
    "cpu_attributes": ("CPU_MODE",),
    "db_attributes": (
        "DB_CLIENT_CONNECTION_POOL_NAME",
        "DB_CLIENT_CONNECTION_STATE",
        "DB_QUERY_PARAMETER_TEMPLATE",
        "DB_RESPONSE_RETURNED_ROWS",
    ),
    "deployment_attributes": ("DEPLOYMENT_ENVIRONMENT_NAME",),
    "disk_attributes": ("DISK_IO_DIRECTION",),
    "host_attributes": ("HOST_ARCH", "HOST_NAME"),
    "http_attributes": ("HTTP_METHOD", "HTTP_STATUS_CODE"),
    "network_attributes": ("NETWORK_INTERFACE_NAME", "NETWORK_IO_DIRECTION"),
    "os_attributes": ("OS_TYPE",),
    "otel_attributes": ("OTEL_COMPONENT_NAME", "OTEL_COMPONENT_TYPE"),
    "process_attributes": (
        "PROCESS_EXECUTABLE_NAME",
        "PROCESS_PID",
        "PROCESS_RUNTIME_NAME",
        "PROCESS_RUNTIME_VERSION",
    ),
    "service_attributes": ("SERVICE_NAMESPACE",),
    "system_attributes": (
        "SYSTEM_DEVICE",
        "SYSTEM_FILESYSTEM_MOUNTPOINT",
        "SYSTEM_FILESYSTEM_STATE",
        "SYSTEM_MEMORY_STATE",
    ),
}


def test_incubating_attribute_keys_match_the_semantic_conventions_library() -> None:
    checked = 0
    for module_name, constants in INCUBATING_ATTRIBUTES.items():
        module = importlib.import_module(f"opentelemetry.semconv._incubating.attributes.{module_name}")
        for constant in constants:
            assert getattr(semconv, constant) == getattr(module, constant), constant
            checked += 1
    # Every key of semconv's written-out block is in the table above.
    source = (PACKAGE / "semconv.py").read_text()
    block = source.split("# Incubating attribute keys, written out", 1)[1].split("\nKind = ", 1)[0]
    written = [line.split(":", 1)[0] for line in block.splitlines() if ": Final = " in line]
    assert checked == len(written) and set(written) == {
        c for cs in INCUBATING_ATTRIBUTES.values() for c in cs
    }


def test_standard_metric_names_match_the_semantic_conventions_library() -> None:
    standard = [inst for inst in semconv.INSTRUMENTS if inst.standard]
    assert {inst.name for inst in standard} == set(STANDARD_CONSTANTS)
    for inst in standard:
        module, constant = STANDARD_CONSTANTS[inst.name]
        assert getattr(importlib.import_module(module), constant) == inst.name


def test_every_span_name_and_event_is_in_the_contract() -> None:
    declared = {v for k, v in vars(semconv).items() if k.startswith(("EVENT_", "SPAN_"))}
    assert declared == {event.name for event in semconv.EVENTS}
    for event in semconv.EVENTS:
        assert f"| `{event.name}` | {event.kind} |" in semconv.contract_table()


def test_contract_table_is_printed_by_the_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amqadf_agent.semconv"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out == semconv.contract_table()


@pytest.mark.parametrize("leaf", ["statements.py", "redaction.py"])
def test_the_shared_leaf_modules_import_only_the_standard_library(leaf: str) -> None:
    # The agent and the analyzer both import them; anything of the package here would breach a wall.
    for module in _imports(PACKAGE / leaf):
        assert module.split(".")[0] in sys.stdlib_module_names or module == "__future__", module


def _module_imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports when it is imported (imports
    inside functions and under ``TYPE_CHECKING`` are left out: they do not run at import)."""
    modules: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}

    def visit(body: list[ast.stmt], deps: set[str]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = node.test
                if (
                    getattr(test, "id", None) == "TYPE_CHECKING"
                    or getattr(test, "attr", None) == "TYPE_CHECKING"
                ):
                    continue
                visit(node.body, deps)
                visit(node.orelse, deps)
            elif isinstance(node, ast.Try):
                visit(node.body, deps)
                visit(node.orelse, deps)
                visit(node.finalbody, deps)
                for handler in node.handlers:
                    visit(handler.body, deps)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                deps.add(node.module)
                deps.update(
                    f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules
                )

    for name, path in modules.items():
        deps: set[str] = set()
        visit(ast.parse(path.read_text()).body, deps)
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_no_two_modules_import_each_other_at_import_time() -> None:
    graph = _module_imports()
    assert (
        len(graph) > 100
        and "amqadf_agent.analyzer.prometheus_http" in graph["amqadf_agent.analyzer.prometheus_source"]
    )
    assert _cycles(graph) == []
    # the check sees a cycle when there is one
    assert _cycles({**graph, "amqadf_agent.semconv": {"amqadf_agent.analyzer.run"}}) != []

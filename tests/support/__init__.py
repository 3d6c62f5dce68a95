"""What the tests share: fakes, readers of collected telemetry, and real servers to run against.

``tests/`` is on ``sys.path`` while pytest runs (rootdir-relative imports), so a test writes
``from support.clock import FakeClock``.

- ``clock``: ``FakeClock``, the injected time of every component test.
- ``metrics``: what an ``InMemoryMetricReader`` collected, as the tests compare it.
- ``prometheus_server``, ``redis_server``: real servers on free loopback ports.
- ``vault_stub``: a loopback HTTP server speaking the part of Vault's API that ``hvac`` uses.
- ``grafana_schema``: checks a dashboard against Grafana's schema.
- ``soak``: what the soak scripts of ``tests/bench`` measure alike.
- ``sanitizing``: a tracer provider with the sanitizing processor before an in-memory exporter.
- ``json_report``: the analyzer's JSON report of a telemetry directory, through the command.
"""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dropped_spans(agent: Any) -> int:
    """The spans a started ``amqadf_agent`` agent has counted as dropped by its exporters so far."""
    assert agent.stats is not None
    return sum(n for (signal, _, _), n in agent.stats.snapshot()[1].items() if signal == "traces")


def json_report(telemetry: Any, tmp_path: Any) -> dict[str, Any]:
    """``amqadf-analyze TELEMETRY --format json`` as a user runs it (the command's ``main``, its
    output to a file in ``tmp_path``): the report, after checking the command succeeded."""
    import json

    from amqadf_agent.cli.analyze import main

    target = tmp_path / "report.json"
    assert main([str(telemetry), "--format", "json", "-o", str(target)]) == 0
    report: dict[str, Any] = json.loads(target.read_text())
    return report

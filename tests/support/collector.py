"""The project's own OpenTelemetry Collector (collector-config/distribution), really run, for tests.

    binary = collector_binary()           # collector-config/build.sh, once per session
    with CollectorServer(CONFIG_DIR / "file-export.yaml", tmp_path) as collector:
        collector.otlp_http                # http://127.0.0.1:<port>, where the agent sends

A copy of the configuration is run with every listening address moved to a free loopback port and
every file exporter's path moved under ``work/telemetry``, so the checked-in configuration itself is
what runs, and several Collectors can run at once. ``collector_binary`` raises ``CollectorUnavailable``
with the one line that says what to install when Go is missing.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml  # pyyaml, in the test extra

from amqadf_agent.analyzer.model import MetricRecord, NumberPoint
from amqadf_agent.analyzer.otlp_reader import read
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
BUILD_SCRIPT = CONFIG_DIR / "build.sh"
#: Where Go is installed on the project's machines when it is not on PATH.
GO_DIRS = ("/usr/local/go/bin",)


#: Components that Collector 0.161.0 renamed, by the old name that it still accepts (``otelcol
#: components`` lists only the new one). The configurations keep the old names: otelcol-contrib
#: 0.136.0 (components-otelcol-contrib.json) reads only those, and 0.161.0 reads both.
RENAMED = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "loadbalancing": "load_balancing"}


class CollectorUnavailable(RuntimeError):
    """The Collector cannot be built here (no Go, or the build failed)."""


def go_environment() -> dict[str, str]:
    """The environment with Go's usual install directory on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), *GO_DIRS])
    return env


@functools.cache
def collector_binary() -> Path:
    """Build the distribution with ``build.sh`` (a cached binary when the sources did not change)."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, env=go_environment(), check=False
    )
    if result.returncode != 0:
        raise CollectorUnavailable(
            f"collector-config/build.sh failed ({result.returncode}): {result.stderr.strip()[-3000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def load_config(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


class CollectorServer:
    """Runs the Collector on a loopback copy of ``config``; ``stop``/``start`` keep its ports.

    ``overrides``: exporter or processor name -> settings merged over its own (for example a
    resolver that lists the gateways' loopback ports instead of a DNS name).
    """

    def __init__(
        self,
        config: Path,
        work: Path,
        *,
        overrides: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        self.source = config
        self.work = work
        self.telemetry = work / "telemetry"
        self.env = env or {}
        self.args = args  # more command-line arguments, e.g. --feature-gates=...
        self.ready_timeout = ready_timeout
        self.config = self._rewrite(load_config(config), overrides or {})
        self.config_path = work / f"otelcol-{config.name}"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = work / f"otelcol-{config.stem}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _rewrite(self, config: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
        config = copy.deepcopy(config)
        self.telemetry.mkdir(parents=True, exist_ok=True)
        protocols = config["receivers"]["otlp"]["protocols"]
        self.grpc_port = free_port()
        self.http_port = free_port()
        protocols["grpc"]["endpoint"] = f"127.0.0.1:{self.grpc_port}"
        protocols["http"]["endpoint"] = f"127.0.0.1:{self.http_port}"
        self.health_port = free_port()
        config["extensions"]["health_check"]["endpoint"] = f"127.0.0.1:{self.health_port}"
        self.prometheus_port = 0
        for name, spec in (config.get("exporters") or {}).items():
            kind = name.split("/", 1)[0]
            if kind == "file":
                spec["path"] = str(self.telemetry / Path(spec["path"]).name)
            elif kind == "prometheus":
                self.prometheus_port = free_port()
                spec["endpoint"] = f"127.0.0.1:{self.prometheus_port}"
            elif kind == "otlp" and not spec["endpoint"].startswith("127.0.0.1"):
                # a backend that does not run here (Tempo): a loopback port where nothing listens
                spec["endpoint"] = f"127.0.0.1:{free_port()}"
            if name in overrides:
                spec.update(overrides[name])
        for name, spec in (config.get("processors") or {}).items():
            if name in overrides:
                config["processors"][name] = {**(spec or {}), **overrides[name]}
        # the Collector's own metrics would take port 8888 in every instance
        config["service"].setdefault("telemetry", {})["metrics"] = {"level": "none"}
        return config

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def otlp_grpc(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> CollectorServer:
        binary = collector_binary()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process holds it; closed in stop()
        self._log = log
        self._proc = subprocess.Popen(
            [str(binary), "--config", str(self.config_path), *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close()
                raise RuntimeError(f"the Collector exited with {code}:\n{self.log()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"the Collector was not healthy within {self.ready_timeout}s:\n{self.log()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """A graceful shutdown: the Collector flushes its batches and files before it exits."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._close()

    def _close(self) -> None:
        self._proc = None
        self._log.close()

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def validate(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``otelcol validate`` of a configuration as it is checked in."""
    return subprocess.run(
        [str(collector_binary()), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def component_types() -> dict[str, set[str]]:
    """What the binary holds, by kind (``receivers``, ``exporters``...), from ``otelcol components``,
    with the old names of renamed exporters."""
    result = subprocess.run(
        [str(collector_binary()), "components"], capture_output=True, text=True, check=True
    )
    listed = yaml.safe_load(result.stdout)
    held = {
        kind: {entry["name"] for entry in listed.get(kind) or []}
        for kind in ("receivers", "processors", "exporters", "extensions", "connectors")
    }
    held["exporters"] |= {old for old, new in RENAMED.items() if new in held["exporters"]}
    return held


def counted_losses(metrics_dir: Path, signal: str) -> int:
    """Items of ``signal`` the agent says its ``otlp`` exporter lost: dropped after a failed export,
    and (for spans) dropped from a full queue; the last value of each cumulative series."""
    last: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    for record in read([metrics_dir], strict=True):
        if not isinstance(record, MetricRecord):
            continue
        if record.name not in ("amqadf.agent.telemetry.dropped", "otel.sdk.processor.span.processed"):
            continue
        for point in record.points:
            attrs = dict(point.attributes)
            if record.name == "amqadf.agent.telemetry.dropped":
                if attrs.get("amqadf.agent.signal") != signal or attrs.get("amqadf.agent.exporter") != "otlp":
                    continue
            elif signal != "traces" or attrs.get("error.type") != "queue_full":
                continue
            assert isinstance(point, NumberPoint) and point.value is not None
            key = (record.name, tuple(sorted(attrs.items())) + tuple(sorted(record.resource.items())))
            last[key] = max(last.get(key, 0.0), float(point.value))
    return int(sum(last.values()))

"""A real ``prometheus`` server for tests, on a free loopback port, with a temporary config and data dir.

    with PrometheusServer(scrape_configs=[...], scrape_interval="1s") as prom:
        prom.query('up')          # the "data" of /api/v1/query, raises PrometheusQueryError on an error

Raises ``FileNotFoundError`` naming the Debian package when ``prometheus`` is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from support import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class PrometheusQueryError(RuntimeError):
    """Prometheus answered a query with an error (bad PromQL, an evaluation error)."""


class PrometheusServer:
    """Starts ``prometheus`` on 127.0.0.1 with ``scrape_configs``; stops it and removes its files."""

    def __init__(
        self, scrape_configs: list[dict[str, Any]], scrape_interval: str = "1s", ready_timeout: float = 20.0
    ) -> None:
        if not Path(PROMETHEUS).exists():
            raise FileNotFoundError(
                f"{PROMETHEUS} not found: install the Debian package `prometheus` "
                "(apt-get install -y prometheus)"
            )
        self.scrape_configs = scrape_configs
        self.scrape_interval = scrape_interval
        self.ready_timeout = ready_timeout
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="amqadf-prometheus-")
        root = Path(self._tmp.name)
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": self.scrape_configs,
        }
        # JSON is YAML: no YAML library needed to write the configuration.
        (root / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self.port = free_port()
        self._log = open(root / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--web.enable-lifecycle",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus was not ready within {self.ready_timeout}s")

    def log(self) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` field, or PrometheusQueryError with Prometheus' message."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusQueryError(f"HTTP {exc.code} from {path}") from exc
        if body.get("status") != "success":
            raise PrometheusQueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result vector (raises PrometheusQueryError on an error)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        result = data["result"]
        return result if isinstance(result, list) else [result]

    def wait_for(self, expr: str, deadline: float) -> bool:
        """Whether ``expr`` returns data before ``time.monotonic()`` reaches ``deadline`` (polled)."""
        while time.monotonic() < deadline:
            try:
                if self.query(expr):
                    return True
            except (PrometheusQueryError, OSError):
                pass
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- the demo scraped on both naming paths ---------------------------------------------------------
#: The demo's service name (its Prometheus job when scraped directly).
DEMO_SERVICE = "amqadf-demo-shop"
#: The job under which the same targets are scraped with the Collector's names.
VIA_COLLECTOR = "amqadf-demo-shop-via-collector"


#: The console script of the environment running the tests (not a fixed path).
AGENT = Path(sys.executable).parent / "amqadf-agent"


def demo_environment(prometheus_port: int) -> dict[str, str]:
    """The tests' environment without its AMQADF_*/OTEL_* settings, exposing metrics on the port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AMQADF_"))}
    return {**env, "OTEL_EXPORTER_PROMETHEUS_PORT": str(prometheus_port)}


def start_demo(
    work: Path,
    prometheus_port: int,
    duration: float,
    log: IO[bytes],
    exporters: Sequence[str] = ("prometheus",),
) -> subprocess.Popen[bytes]:
    """``amqadf-agent demo`` in ``work`` for ``duration`` s, metrics every second on the port, stderr to
    ``log``; its telemetry files go to ``work/telemetry``."""
    options = [arg for exporter in exporters for arg in ("--exporter", exporter)]
    options += ["--duration", str(duration), "--metric-interval", "1", "--out", str(work / "telemetry")]
    return subprocess.Popen(
        [str(AGENT), "demo", *options],
        env=demo_environment(prometheus_port),
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def stop_processes(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """Terminate every process still running, then wait for each (killed after 15 s)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _ratio_gauges() -> list[str]:
    from amqadf_agent import semconv

    return sorted(
        inst.name.replace(".", "_")
        for inst in semconv.INSTRUMENTS
        if inst.unit == "1" and inst.kind in ("gauge", "observable_gauge")
    )


#: Unit-1 gauges: the Python exporter names them ``x``, the Collector ``x_ratio``.
RATIO_GAUGES = _ratio_gauges()


def both_naming_paths(targets: list[str]) -> list[dict[str, object]]:
    """Scrape ``targets`` twice: as the agent's exporter names metrics, and renamed as the Collector
    does (no Collector can run here, so its ``_ratio`` suffix is imitated by relabelling)."""
    return [
        {"job_name": DEMO_SERVICE, "static_configs": [{"targets": targets}]},
        {
            "job_name": VIA_COLLECTOR,
            "static_configs": [{"targets": targets}],
            "metric_relabel_configs": [
                {
                    "source_labels": ["__name__"],
                    "regex": f"({'|'.join(RATIO_GAUGES)})",
                    "target_label": "__name__",
                    "replacement": "${1}_ratio",
                }
            ],
        },
    ]

"""Structure of the Collector configurations and the compose stack (no Collector binary runs here).

Every pipeline names defined components, every defined component belongs to the distribution the
configs target (collector-config/components-otelcol-contrib.json, with its version), the OTLP
ports match what the agent sends to, and the per-host collector routes traces by trace id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml  # pyyaml, in the test extra

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "collector-config"
CONFIGS = sorted(
    p
    for p in CONFIG_DIR.glob("*.yaml")
    if p.name not in ("docker-compose.yaml", "prometheus.yaml", "builder-config.yaml")
)
DISTRIBUTION = json.loads((CONFIG_DIR / "components-otelcol-contrib.json").read_text())
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_the_configs_exist() -> None:
    assert {"gateway.yaml", "agent.yaml", "file-export.yaml"} <= {p.name for p in CONFIGS}


def test_distribution_list_names_its_version() -> None:
    assert DISTRIBUTION["distribution"] == "otelcol-contrib"
    assert re.fullmatch(r"\d+\.\d+\.\d+", DISTRIBUTION["version"])
    for section in SECTIONS:
        for name, module in DISTRIBUTION[section].items():
            assert module.endswith(name.replace("_", "")) or "/" in module, (section, name)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_pipelines_name_defined_components(path: Path) -> None:
    config = load(path)
    service = config["service"]
    assert service["pipelines"], path.name
    for ext in service.get("extensions", []):
        assert ext in (config.get("extensions") or {}), f"{path.name}: extension {ext} is not defined"
    connectors = config.get("connectors") or {}
    for pipeline, spec in service["pipelines"].items():
        assert spec.get("receivers") and spec.get("exporters"), f"{path.name}: {pipeline} is incomplete"
        for section in ("receivers", "processors", "exporters"):
            for name in spec.get(section, []):
                defined = name in (config.get(section) or {}) or (
                    section != "processors" and name in connectors
                )
                assert defined, f"{path.name}: pipeline {pipeline} names {section[:-1]} {name}, not defined"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_components_belong_to_the_distribution(path: Path) -> None:
    config = load(path)
    for section in SECTIONS:
        for name in config.get(section) or {}:
            kind = name.split("/", 1)[0]
            assert kind in DISTRIBUTION[section], (
                f"{path.name}: {section[:-1]} {kind!r} is not in otelcol-contrib {DISTRIBUTION['version']}"
            )


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", ["gateway.yaml", "agent.yaml", "file-export.yaml"])
def test_otlp_ports_match_the_agent(name: str) -> None:
    from amqadf_agent.runtime.settings import AgentSettings

    settings = AgentSettings()
    assert settings.otlp_protocol == "http/protobuf"
    # the OTLP/HTTP exporters' default endpoint when none is configured
    agent_default = urlparse("http://localhost:4318")
    protocols = load(CONFIG_DIR / name)["receivers"]["otlp"]["protocols"]
    assert _port(protocols["http"]["endpoint"]) == agent_default.port == 4318
    assert _port(protocols["grpc"]["endpoint"]) == 4317


def test_agent_routes_traces_by_trace_id_to_the_gateways() -> None:
    config = load(CONFIG_DIR / "agent.yaml")
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert len(exporters) == 1 and exporters[0].split("/")[0] == "loadbalancing"
    lb = config["exporters"][exporters[0]]
    assert lb["routing_key"] == "traceID"
    assert int(lb["resolver"]["dns"]["port"]) == 4317  # the gateways' OTLP gRPC receiver
    gateway = load(CONFIG_DIR / "gateway.yaml")
    assert _port(gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]) == 4317
    assert "tail_sampling" in gateway["service"]["pipelines"]["traces"]["processors"]


def test_gateway_exports_prometheus_tempo_and_files() -> None:
    config = load(CONFIG_DIR / "gateway.yaml")
    pipelines = config["service"]["pipelines"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert any(e.startswith("otlp/") for e in pipelines["traces"]["exporters"])
    for signal in ("traces", "metrics", "logs"):
        files = [e for e in pipelines[signal]["exporters"] if e.split("/")[0] == "file"]
        assert files, signal
        spec = config["exporters"][files[0]]
        assert spec.get("format", "json") == "json" and spec["rotation"]["max_megabytes"] > 0
    assert "health_check" in config["service"]["extensions"]
    processors = pipelines["metrics"]["processors"]
    assert processors[0] == "memory_limiter" and processors[-1] == "batch"


def test_compose_images_are_pinned() -> None:
    compose = load(CONFIG_DIR / "docker-compose.yaml")
    services = compose["services"]
    assert {"gateway", "agent", "prometheus", "tempo", "grafana", "demo"} <= set(services)
    for name, spec in services.items():
        image = spec["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    # the release collector-config/build.sh builds, whose binary validates every configuration
    release = load(CONFIG_DIR / "builder-config.yaml")["dist"]["version"]
    for name in ("gateway", "agent"):
        image = services[name]["image"]
        assert image == f"otel/opentelemetry-collector-contrib:{release}", f"{name}: {image} is not {release}"
    demo_env = services["demo"]["environment"]
    assert urlparse(demo_env["OTEL_EXPORTER_OTLP_ENDPOINT"]).port == 4318


def test_compose_mounts_exist() -> None:
    compose = load(CONFIG_DIR / "docker-compose.yaml")
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and not source.startswith("./.telemetry") and source != "..":
                assert (CONFIG_DIR / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_scrape_config_and_grafana_provisioning() -> None:
    prom = load(CONFIG_DIR / "prometheus.yaml")
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    gateway = jobs["otel-gateway"]
    assert gateway["honor_labels"] is True  # keep job=service.name from the Collector
    port = _port(load(CONFIG_DIR / "gateway.yaml")["exporters"]["prometheus"]["endpoint"])
    assert gateway["static_configs"][0]["targets"] == [f"gateway:{port}"]
    datasources = load(CONFIG_DIR / "grafana/provisioning/datasources/datasources.yaml")["datasources"]
    assert {d["type"] for d in datasources} >= {"prometheus", "tempo"}
    providers = load(CONFIG_DIR / "grafana/provisioning/dashboards/dashboards.yaml")["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/amqadf"

"""A sync call that outlives its ``@timeout`` keeps running in its thread; the agent's shutdown waits
for it (within its share of the deadline), so the spans it still makes are exported, not lost at exit."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import amqadf_agent
from amqadf_agent.analyzer.model import SpanRecord
from amqadf_agent.analyzer.otlp_reader import read
from amqadf_agent.resilience import timeout as timeout_module
from amqadf_agent.resilience.timeout import CallTimeoutError, timeout, wait_for_overrunning
from amqadf_agent.runtime import agent as agent_module


def _span_names(directory: Path) -> list[str]:
    return [r.name for r in read([directory / "traces.jsonl"], strict=True) if isinstance(r, SpanRecord)]


def _start(directory: Path) -> amqadf_agent.Agent:
    agent = amqadf_agent.start(
        exporters=["file"],
        output_dir=directory,
        service_name="overrun",
        self_metrics=False,
        resource_monitor=False,
        shutdown_timeout=5.0,
    )
    assert agent.running, agent.error
    return agent


def _late_report(agent: amqadf_agent.Agent, release: threading.Event) -> None:
    @timeout(0.05, name="report")
    def report() -> None:
        release.wait(5)
        with agent.tracer("app").start_as_current_span("late-query"):
            pass

    with agent.tracer("app").start_as_current_span("request"), pytest.raises(CallTimeoutError):
        report()


@pytest.mark.parametrize("share", [agent_module.OVERRUN_SHARE, 0.0])
def test_shutdown_waits_for_a_call_past_its_timeout_and_exports_its_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    monkeypatch.setattr(agent_module, "OVERRUN_SHARE", share)
    agent = _start(tmp_path)
    release = threading.Event()
    _late_report(agent, release)
    assert len(timeout_module._OVERRUNNING) == 1
    threading.Timer(0.3, release.set).start()  # the call ends 0.3 s into the shutdown
    assert agent.shutdown()
    names = _span_names(tmp_path)
    assert "request" in names
    # With no share of the deadline for it (the control), the late span is made after the flush: lost.
    assert ("late-query" in names) is (share > 0)
    release.set()
    assert wait_for_overrunning(5) == 0 and not timeout_module._OVERRUNNING


def test_a_call_that_never_ends_costs_shutdown_only_its_share(tmp_path: Path) -> None:
    agent = _start(tmp_path)
    release = threading.Event()
    _late_report(agent, release)
    started = time.monotonic()
    assert agent.shutdown(timeout=1.0)
    took = time.monotonic() - started
    release.set()
    # half of the 1 s deadline waited for the call, the flush had the rest; generous on a shared machine
    assert 0.4 <= took < 3.0
    assert "request" in _span_names(tmp_path)
    wait_for_overrunning(5)


def test_a_call_ending_in_time_is_not_left_behind() -> None:
    @timeout(5)
    def quick() -> int:
        return 7

    assert quick() == 7
    assert not timeout_module._OVERRUNNING
    assert wait_for_overrunning(0) == 0

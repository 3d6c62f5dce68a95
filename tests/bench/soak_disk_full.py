"""Soak: an application writing its spans to files on a disk that fills up, stays full, then frees.

A real 64 MiB tmpfs (mounted here, so it runs as root) holds the agent's output directory; files
rotate at 1 MiB. Three phases of ``seconds`` each: the disk has room; a filler file takes all that is
left (each batch then fails with ENOSPC); the filler is deleted. It reports, per phase, the cost of
a span as the application sees it (p50/p99 in µs), the RSS, the spans made, written and counted as
dropped; then whether every span made is either in a file or counted as dropped, whether writing
resumed once the disk had room and rotation went on, and whether every line on disk is whole.
Not part of the test suite (it runs for minutes, and mounts a file system):

    python tests/bench/soak_disk_full.py [seconds per phase] [spans per second]

It prints one JSON line per phase and a Markdown table at the end.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support import dropped_spans
from support.soak import cost_buckets, count_queue_drops, percentile, rss_mb, timed_spans

DISK = "64m"
ROTATE_BYTES = 1024 * 1024


@contextlib.contextmanager
def small_disk() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "disk"
        disk.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(disk)], check=True
        )
        try:
            yield disk
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(path: Path) -> int:
    """Write ``path`` until the disk is full; the bytes it took."""
    written = 0
    chunk = b"f" * 65536
    with open(path, "wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return written


def spans_on_disk(disk: Path) -> tuple[int, int, int]:
    """Spans in every traces file (rotated ones included), the files, and the lines that are not whole."""
    spans = files = torn = 0
    for path in disk.glob("traces*.jsonl"):
        files += 1
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            torn += 1
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                torn += 1
                continue
            for resource in message.get("resourceSpans", []):
                for scope in resource.get("scopeSpans", []):
                    spans += len(scope.get("spans", []))
    return spans, files, torn


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 500.0
    queue_drops = count_queue_drops()

    import amqadf_agent

    phases = []
    with small_disk() as disk:
        agent = amqadf_agent.start(
            exporters=["file"],
            output_dir=disk,
            service_name="disk-soak",
            span_export_delay=0.5,
            metric_interval=60,
            self_metrics=False,
            resource_monitor=False,
            file_max_bytes=ROTATE_BYTES,
            file_max_backups=1000,  # nothing pruned: every span written stays countable
        )
        assert agent.running, agent.error
        assert agent.stats is not None
        tracer = agent.tracer("soak")
        filler = disk / "filler"

        def dropped() -> int:
            return dropped_spans(agent) + sum(queue_drops.values())

        made = 0
        for phase in ("room", "full", "freed"):
            if phase == "full":
                agent.force_flush(timeout=5.0)
                filled = fill(filler)
            if phase == "freed":
                filler.unlink()
            costs = cost_buckets()
            made_before, dropped_before = made, dropped()
            files_before = spans_on_disk(disk)[1]
            started = time.monotonic()
            while (now := time.monotonic()) - started < seconds:
                timed_spans(tracer, int(rate / 10), costs)
                made += int(rate / 10)
                time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))
            agent.force_flush(timeout=5.0)
            on_disk, files, _ = spans_on_disk(disk)
            result = {
                "phase": phase,
                "p50_us": percentile(costs, 0.5),
                "p99_us": percentile(costs, 0.99),
                "rss_mb": round(rss_mb(), 1),
                "made": made - made_before,
                "dropped_counted": dropped() - dropped_before,
                "trace_files": files,
                "rotations": files - files_before,
                "spans_on_disk_total": on_disk,
            }
            if phase == "full":
                result["filler_bytes"] = filled
            phases.append(result)
            print(json.dumps(result), flush=True)
        before = time.monotonic()
        finished = agent.shutdown()
        shutdown_s = time.monotonic() - before
        on_disk, files, torn = spans_on_disk(disk)
        total_dropped = sum(p["dropped_counted"] for p in phases)  # type: ignore[misc]
        summary = {
            "made": made,
            "on_disk": on_disk,
            "dropped_counted": total_dropped,
            "unaccounted": made - on_disk - total_dropped,
            "torn_or_glued_lines": torn,
            "writing_resumed": phases[2]["spans_on_disk_total"] > phases[1]["spans_on_disk_total"],
            "shutdown_s": round(shutdown_s, 2),
            "shutdown_finished": finished,
        }
        print(json.dumps(summary), flush=True)
    print(
        f"\n`python tests/bench/soak_disk_full.py {seconds:g} {rate:g}` ({DISK} tmpfs, files rotated at "
        f"{ROTATE_BYTES // 1024} KiB, {os.cpu_count()} CPUs, Python {sys.version.split()[0]})\n"
    )
    print("| disk | span p50 µs | span p99 µs | RSS MB | spans made | dropped, counted | rotations |")
    print("|---|---|---|---|---|---|---|")
    for p in phases:
        print(
            f"| {p['phase']} | {p['p50_us']} | {p['p99_us']} | {p['rss_mb']} | {p['made']} | "
            f"{p['dropped_counted']} | {p['rotations']} |"
        )
    print(
        f"\nMade {made}; in the files {on_disk}; dropped and counted {total_dropped}; unaccounted "
        f"{summary['unaccounted']}; lines torn or glued {torn}; shutdown {summary['shutdown_s']} s."
    )


if __name__ == "__main__":
    main()

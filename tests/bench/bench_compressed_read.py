"""The analyzer's reader over one OTLP JSON trace file, plain and compressed as the Collector's
``file`` exporter or a user compresses it. Prints a table.

    .venv/bin/python tests/bench/bench_compressed_read.py [--size-mb 40] [--repeat 3]

The file is bench_analyzer.py's traffic. Rows: plain JSON lines; gzip (``gzip -6`` of the file);
zstd framed (the Collector's default with ``compression: zstd``: each line a zstd frame after its
4-byte length); zstd native (the ``exporter.file.nativeCompression`` gate: a zstd stream, here one
frame per line as the Collector writes one per batch). Each row is ``otlp_reader.read`` building
every record, in this process, the fastest of ``--repeat`` runs (the machine is shared); spans/s is
the file's span count over that time.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zstandard
from bench_analyzer import generate

from amqadf_agent.analyzer.otlp_reader import ReadStats, read


def framed(lines: list[bytes]) -> bytes:
    cctx = zstandard.ZstdCompressor(level=3)
    return b"".join(
        len(f).to_bytes(4, "big") + f for f in (cctx.compress(line.rstrip(b"\n")) for line in lines)
    )


def native(lines: list[bytes]) -> bytes:
    cctx = zstandard.ZstdCompressor(level=3)
    return b"".join(cctx.compress(line) for line in lines)


def timed_read(path: Path, spans: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        stats = ReadStats()
        start = time.perf_counter()
        for _ in read([path], strict=True, stats=stats):
            pass
        best = min(best, time.perf_counter() - start)
        assert stats.records["spans"] == spans, (path, stats.records, spans)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "traces.jsonl"
        generate(plain, Path(tmp) / "half.jsonl", args.size_mb)
        lines = plain.read_bytes().splitlines(keepends=True)
        spans = sum(1 for _ in read([plain], strict=True))
        makers: list[tuple[str, str, Callable[[list[bytes]], bytes]]] = [
            ("gzip -6", "traces.jsonl.gz", lambda ls: gzip.compress(b"".join(ls), 6)),
            ("zstd framed (Collector default)", "framed.jsonl", framed),
            ("zstd native (feature gate)", "native.jsonl.zst", native),
        ]
        rows = [("plain JSON lines", plain)]
        for label, name, make in makers:
            path = Path(tmp) / "c" / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(make(lines))
            rows.append((label, path))
        print(f"{spans} spans, {plain.stat().st_size / 1e6:.1f} MB of JSON lines, best of {args.repeat}")
        print(f"| {'file':<32} | {'MB on disk':>10} | {'read s':>7} | {'spans/s':>9} |")
        print(f"|{'-' * 34}|{'-' * 12}|{'-' * 9}|{'-' * 11}|")
        for label, path in rows:
            seconds = timed_read(path, spans, args.repeat)
            size = path.stat().st_size / 1e6
            print(f"| {label:<32} | {size:>10.1f} | {seconds:>7.2f} | {spans / seconds:>9.0f} |")


if __name__ == "__main__":
    main()

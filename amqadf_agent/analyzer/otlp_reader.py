"""A streaming reader of OTLP JSON files: the format the Collector's ``file`` exporter, the Python SDK's
``opentelemetry-exporter-otlp-json-file`` and the agent write.

Each line of such a file is one export request: ``{"resourceSpans": [...]}``, ``{"resourceMetrics": [...]}``
or ``{"resourceLogs": [...]}``. Ids are hex, int64 values decimal strings, enums ints. Other producers
(the official examples of the OTLP repository) write one pretty-printed document per file, upper-case
ids and int64 values as JSON numbers; the specification allows all of it, so this reader accepts it too.

The reader is a generator from end to end: it holds at most one line (or one document, up to a cap) of
records at a time, so memory stays bounded whatever the size of the input. Bad input never raises by
default: a bad line is skipped and counted in ``ReadStats`` as ``file:line: reason``. With
``strict=True`` the first problem raises ``TelemetryInputError`` with that message instead.

Span lines, the bulk of any trace file, are decoded by msgspec into typed structures (``otlp_typed``);
any other line, and any span line in an encoding that path does not take, is parsed by orjson and
checked field by field (``otlp_json``). Both give the same records, their values read by ``otlp_values``.
Files and lines, and the problems, are ``otlp_files``'; this module is the front: ``read`` and what a
caller needs with it.

Nothing here imports the OpenTelemetry SDK or API: the analyzer must run without the agent's runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from amqadf_agent.analyzer.model import Record
from amqadf_agent.analyzer.otlp_files import (
    FILE_SUFFIXES,
    MAX_BAD_LINES_IN_A_ROW,
    MAX_DOCUMENT_BYTES,
    MAX_GZIP_RATIO,
    MAX_LINE_BYTES,
    MAX_PROBLEMS_KEPT,
    PathArg,
    ReadStats,
    _Reader,
)

__all__ = [
    "FILE_SUFFIXES",
    "MAX_BAD_LINES_IN_A_ROW",
    "MAX_DOCUMENT_BYTES",
    "MAX_GZIP_RATIO",
    "MAX_LINE_BYTES",
    "MAX_PROBLEMS_KEPT",
    "PathArg",
    "ReadStats",
    "read",
]


def read(
    paths: PathArg | Iterable[PathArg],
    *,
    strict: bool = False,
    stats: ReadStats | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
) -> Iterator[Record]:
    """Yield the span, metric and log records of OTLP JSON files, lazily.

    ``paths`` are files (read whatever their name, plain, gzip or zstd) and directories (searched
    recursively for ``*.json``, ``*.jsonl``, ``*.ndjson``, each optionally ``.gz`` or ``.zst``; hidden
    entries are skipped). Records come in file order, then line order; no time order is promised.
    """
    reader = _Reader(stats if stats is not None else ReadStats(), strict, max_line_bytes, max_document_bytes)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for display, path in reader.files(paths):
        # The records of one line come as a list: one generator frame between the caller and them.
        for records in reader.read_file(display, path):
            yield from records

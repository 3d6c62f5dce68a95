"""Fuzzing the analyzer: mutated exported lines through ``amqadf-analyze`` in every format and mode.

The corpus (``tests/fuzz_corpus/``) holds lines the agent's demo exported, cut down to the metrics and
spans the rules read, and the OTLP JSON examples of opentelemetry-proto. A seeded mutator changes
some lines of one file: numbers of one metric, span or log record (or anywhere, or all of them) to
NaN, +-Infinity, +-1e308, a negative or a huge number (as proto3 JSON writes them: strings for int64
and the special doubles), values to a wrong type, the line cut short, nested deeply, or given invalid
UTF-8. Every mutant goes, with the rest of the corpus, through ``main`` in each output format, lenient
and ``--strict``: no exception may escape, the exit status is 0 lenient (2 only when no record is
left to read) and 0 or 2 strict, and the JSON report is strict JSON (no ``NaN``/``Infinity``). Each
analysis runs under a memory and a time budget, so an input that makes it grow or loop fails the
test rather than the machine.

The number of mutants is bounded for CI (about 15 s); ``AMQADF_FUZZ_MUTANTS=2000`` runs a longer
campaign, the same seeds first. Known bad points (``KNOWN_INPUTS``) are their own cases at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.cli.analyze import main

CORPUS = Path(__file__).parent / "fuzz_corpus"
FORMATS = ("text", "json", "markdown", "html")
FUZZ_MUTANTS = int(os.environ.get("AMQADF_FUZZ_MUTANTS", "250"))
#: What a numeric field becomes, as proto3 JSON writes it: an int64 field (a string or an integer) an
#: integer out of its range or negative; a double the special values, extremes, negatives.
BAD_INTEGERS: tuple[Any, ...] = ("-1", -1, "18446744073709551615", "9223372036854775807", 10**30, "0")
BAD_DOUBLES: tuple[Any, ...] = (
    "NaN",
    "Infinity",
    "-Infinity",
    1e308,
    -1e308,
    -1.0,
    -0.5,
    1.7976931348623157e308,
)
BAD_NUMBERS: tuple[Any, ...] = BAD_INTEGERS + BAD_DOUBLES
#: How often a mutant mutates each corpus file: the metrics feed most rules.
WEIGHTS: dict[str, int] = {"metrics.jsonl": 6, "traces.jsonl": 3, "traces-shapes.jsonl": 3}
WRONG_TYPES: tuple[Any, ...] = ({}, [], "x", True, None, [1, 2], {"stringValue": 1})


#: What one analysis of a mutant may take beyond what the test process holds already, and how long.
MEMORY_BUDGET_BYTES = 1 << 30
TIME_BUDGET_S = 30


class BudgetExceededError(Exception):
    """An analysis ran past ``TIME_BUDGET_S``."""


@pytest.fixture(autouse=True)
def bounded() -> Iterator[None]:
    """Each test runs under an address-space limit (``MEMORY_BUDGET_BYTES`` above the process's size
    now) and an alarm: an input that makes the analyzer grow or loop fails the test with a
    ``MemoryError`` or ``BudgetExceededError`` instead of taking the machine down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(Path("/proc/self/status").read_text().split("VmSize:")[1].split()[0]) * 1024
    limit = size + MEMORY_BUDGET_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def expire(_signum: int, _frame: object) -> None:
        raise BudgetExceededError(f"the analysis took over {TIME_BUDGET_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _corpus() -> dict[str, list[bytes]]:
    """File name -> its lines, for every file of the corpus (a pretty-printed document is one line)."""
    corpus: dict[str, list[bytes]] = {}
    for path in sorted(CORPUS.iterdir()):
        if path.suffix == ".jsonl":
            corpus[path.name] = [line for line in path.read_bytes().splitlines() if line.strip()]
        elif path.suffix == ".json":
            corpus[path.name] = [_dump(json.loads(path.read_bytes()))]
    return corpus


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every leaf of a parsed document with its path of keys and indexes."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.lstrip("-").isdigit()


def _bad_number(rng: random.Random, value: Any) -> Any:
    """A bad number of the kind ``value`` is (now and then of the other kind)."""
    integer = isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
    if rng.random() < 0.1:
        integer = not integer
    return rng.choice(BAD_INTEGERS if integer else BAD_DOUBLES)


def _set(document: Any, path: tuple[Any, ...], value: Any) -> None:
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def _numbers(rng: random.Random, line: bytes) -> bytes:
    """Up to eight numeric fields (most of them, in a small line) set to bad numbers."""
    document = json.loads(line)
    numeric = [(path, value) for path, value in _leaves(document) if _is_numeric(value)]
    for path, value in rng.sample(numeric, min(len(numeric), rng.choice((1, 2, 8)))):
        _set(document, path, _bad_number(rng, value))
    return _dump(document)


def _item(path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The path of the metric, span or log record a leaf belongs to (None: resource, scope)."""
    for i, key in enumerate(path[:-1]):
        if key in ("metrics", "spans", "logRecords"):
            return path[: i + 2]
    return None


def _point_numbers(rng: random.Random, line: bytes) -> bytes:
    """One to three numbers of one metric, span or log record (each as likely as the others) set bad:
    what the rules compute with."""
    document = json.loads(line)
    items: dict[tuple[Any, ...], list[tuple[tuple[Any, ...], Any]]] = {}
    for path, value in _leaves(document):
        item = _item(path)
        if item is not None and _is_numeric(value):
            items.setdefault(item, []).append((path, value))
    if not items:
        return _numbers(rng, line)
    numeric = items[rng.choice(sorted(items, key=repr))]
    for path, value in rng.sample(numeric, min(len(numeric), rng.choice((1, 1, 3)))):
        _set(document, path, _bad_number(rng, value))
    return _dump(document)


def _all_numbers(rng: random.Random, line: bytes) -> bytes:
    """Every numeric field to the same bad number."""
    document = json.loads(line)
    bad = rng.choice(BAD_NUMBERS)
    for path, value in list(_leaves(document)):
        if _is_numeric(value):
            _set(document, path, bad)
    return _dump(document)


def _wrong_type(rng: random.Random, line: bytes) -> bytes:
    document = json.loads(line)
    leaves = [path for path, _value in _leaves(document) if path]
    for path in rng.sample(leaves, min(len(leaves), rng.choice((1, 3)))):
        _set(document, path, rng.choice(WRONG_TYPES))
    return _dump(document)


def _truncated(rng: random.Random, line: bytes) -> bytes:
    return line[: rng.randrange(len(line))]


def _nested(rng: random.Random, line: bytes) -> bytes:
    depth = rng.choice((64, 1000, 100_000))
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    document = json.loads(line)
    path, _value = rng.choice([leaf for leaf in _leaves(document) if leaf[0]])
    text = _dump(document)
    marker = json.dumps("\x00nest\x00").encode()
    _set(document, path, "\x00nest\x00")
    text = _dump(document)
    return text.replace(marker, b"[" * depth + b"1" + b"]" * depth, 1)


def _invalid_utf8(rng: random.Random, line: bytes) -> bytes:
    at = rng.randrange(len(line))
    return line[:at] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80")) + line[at:]


MUTATORS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _point_numbers,
    _point_numbers,
    _point_numbers,
    _point_numbers,
    _numbers,
    _all_numbers,
    _wrong_type,
    _truncated,
    _nested,
    _invalid_utf8,
)


def mutant(seed: int, directory: Path) -> str:
    """Write the corpus into ``directory`` with some lines of one file mutated (the same for a seed on
    every run); returns what was mutated, for the failure message."""
    rng = random.Random(seed)
    corpus = _corpus()
    names = sorted(corpus)
    (name,) = rng.choices(names, [WEIGHTS.get(n, 1) for n in names])
    lines = corpus[name]
    mutate = MUTATORS[seed % len(MUTATORS)]
    for index in rng.sample(range(len(lines)), rng.randint(1, len(lines))):
        lines[index] = mutate(rng, lines[index])
    for file_name, file_lines in corpus.items():
        (directory / file_name).write_bytes(b"".join(line + b"\n" for line in file_lines))
    return f"seed {seed}: {name}, {mutate.__name__}"


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def run(path: Path, fmt: str, strict: bool) -> tuple[int, str, str]:
    """``amqadf-analyze PATH --format FMT [--strict]``: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv = [str(path), "--format", fmt, *(["--strict"] if strict else [])]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        signal.alarm(TIME_BUDGET_S)
        try:
            status = main(argv)
        except BaseException:  # the point of the test: show what escaped
            pytest.fail(f"amqadf-analyze {' '.join(argv)} raised:\n{traceback.format_exc()}")
        finally:
            signal.alarm(0)
    return status, out.getvalue(), err.getvalue()


def _has_records(path: Path) -> bool:
    from amqadf_agent.analyzer.otlp_reader import read

    signal.alarm(TIME_BUDGET_S)
    try:
        return any(True for _record in read([path]))
    finally:
        signal.alarm(0)


def check(path: Path, what: str) -> None:
    """Every format, lenient and strict: no traceback, the documented exit status, JSON that parses."""
    for strict in (False, True):
        for fmt in FORMATS:
            status, out, err = run(path, fmt, strict)
            where = f"{what}, {fmt}{' --strict' if strict else ''}: exit {status}, stderr {err[-400:]!r}"
            assert "Traceback" not in err, where
            if strict:
                assert status in (0, 2), where
            elif status != 0:
                # Lenient: what cannot be read is skipped; exit 2 only when no record is left.
                assert status == 2 and not _has_records(path), where
            if status == 0 and fmt == "json":
                report = json.loads(out, parse_constant=_reject_constant)
                assert isinstance(report, dict), where


@pytest.mark.parametrize("seed", range(FUZZ_MUTANTS))
def test_a_mutated_line_never_crashes_the_analyzer(seed: int, tmp_path: Path) -> None:
    what = mutant(seed, tmp_path)
    check(tmp_path, what)


# --- known bad points, each its own case ---------------------------------------------------------------
NOW_NS = "1796534347209739121"


def _metric_line(name: str, data: dict[str, Any]) -> bytes:
    metric = {"name": name, "unit": "s", **data}
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    document = {
        "resourceMetrics": [
            {"resource": resource, "scopeMetrics": [{"scope": {"name": "t"}, "metrics": [metric]}]}
        ]
    }
    return _dump(document)


def _delta_duration(start: str, time: str) -> bytes:
    point = {"startTimeUnixNano": start, "timeUnixNano": time, "count": "10", "sum": 1.0,
             "bucketCounts": ["10", "0"], "explicitBounds": [0.5]}  # fmt: skip
    return _metric_line(
        "http.server.request.duration", {"histogram": {"aggregationTemporality": 1, "dataPoints": [point]}}
    )


def _gauge(name: str, value: Any, **attributes: str) -> bytes:
    attrs = [{"key": k.replace("_", "."), "value": {"stringValue": v}} for k, v in attributes.items()]
    point = {
        "timeUnixNano": NOW_NS,
        "asDouble" if isinstance(value, (float, str)) else "asInt": value,
        "attributes": attrs,
    }
    return _metric_line(name, {"gauge": {"dataPoints": [point]}})


KNOWN_INPUTS = {
    "delta interval from 1 ns": _delta_duration("1", NOW_NS),
    "delta interval to 2262": _delta_duration(NOW_NS, "9223372036854775807"),
    "queue size -1": _gauge("amqadf.worker_pool.queue.size", -1, amqadf_worker_pool_name="p"),
    "NaN CPU utilization": _gauge("process.cpu.utilization", "NaN", cpu_mode="user"),
    "NaN memory utilization": _gauge("system.memory.utilization", "NaN", system_memory_state="used"),
    "Infinity cache size": _gauge("amqadf.cache.size", "Infinity", amqadf_cache_name="c"),
}


@pytest.mark.parametrize("name", list(KNOWN_INPUTS))
def test_one_bad_point_beside_good_telemetry_drops_the_point_not_the_report(
    name: str, tmp_path: Path
) -> None:
    # GIVEN the corpus and one line holding the bad point
    for path in CORPUS.glob("*.jsonl"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "bad.jsonl").write_bytes(KNOWN_INPUTS[name] + b"\n")
    # WHEN analysed THEN the report is written (exit 0) in every format, the JSON one strict JSON
    for fmt in FORMATS:
        status, out, err = run(tmp_path, fmt, strict=False)
        assert status == 0, err
        if fmt == "json":
            json.loads(out, parse_constant=_reject_constant)

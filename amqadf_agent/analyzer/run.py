"""One analysis run as a library call: telemetry in; a summary, ranked recommendations and sections out.

``analyze(AnalysisOptions(paths=("telemetry/",)))`` is what ``amqadf-analyze`` runs; the command
(``cli.analyze``) only parses and checks its arguments, writes the report (``analyzer.report``) and
turns errors into exit codes. ``PerformanceTuner.analyze_telemetry`` and the tests call it too.

One streaming pass feeds every record to the summary, the database rules, the per-window scaling
metrics (``analyzer.windows``), the cache rules, the thread rules, the trace-shape rules and the
connection-pool rules. An input of ``PIPELINE_MIN_BYTES`` or more is read by a forked child process
(``analyzer.pipeline``: the same records in the same order) when a CPU is free for it beside this
process's own (``_free_cpus``: the tasks running now), so that reading and the rules run on two CPUs
at once; on a busy machine two processes would take turns on the same CPUs, and one reads.

The scaling timeline uses ``window`` seconds per window (``None``: 60, or 5 to 30 for data covering
less than ten minutes, so that a short run still has about ten windows; never shorter than the metric
export interval). With ``prometheus`` (a Prometheus-compatible HTTP API, ``analyzer.prometheus_source``)
the metric series the rules need are read beside the files in the same pass; ``since_ns``/``until_ns``
then default to the last hour.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Protocol, TextIO

from amqadf_agent.analyzer import sql
from amqadf_agent.analyzer.dedup import CallDeduplicator
from amqadf_agent.analyzer.endpoints import EndpointRules
from amqadf_agent.analyzer.explain import apply_verdicts
from amqadf_agent.analyzer.impact import ImpactFeed, estimate, ranked
from amqadf_agent.analyzer.impact import to_json as impact_json
from amqadf_agent.analyzer.model import (
    SPAN_KIND_CLIENT,
    LogRecord,
    MetricRecord,
    Record,
    SpanRecord,
    service_name,
)
from amqadf_agent.analyzer.otlp_reader import ReadStats, read
from amqadf_agent.analyzer.recommendation import Recommendation
from amqadf_agent.analyzer.rules.cache import CacheRules
from amqadf_agent.analyzer.rules.database import DatabaseRuleConfig, DatabaseRules
from amqadf_agent.analyzer.rules.pool import PoolRules
from amqadf_agent.analyzer.rules.scaling import analyze_scaling
from amqadf_agent.analyzer.rules.threads import ThreadRuleConfig, ThreadRules
from amqadf_agent.analyzer.rules.trace_shapes import TraceShapeRules
from amqadf_agent.analyzer.summary import Summary, summarize, top_queries
from amqadf_agent.analyzer.windows import DEFAULT_WINDOW_S, WindowAggregator

__all__ = ["Analysis", "AnalysisOptions", "analyze"]

#: Allocations between collections of the youngest generation during the streaming pass and the rules'
#: work after it (CPython's default is 700). The pass allocates millions of short-lived objects without
#: cycles (parsed JSON, records), which reference counting frees; collecting every 700 allocations took
#: about a quarter of the run time (tests/bench/bench_analyzer.py). After the pass the rules read the
#: traces they still hold and price the fixes: at the default, 220 collections there, each walking the
#: young records and calls, took 0.2 s of a 3.3 s run on 100 MB. Cycles (sqlglot's parse trees) are
#: still collected.
GC_YOUNG_THRESHOLD: Final = 50_000
#: Inputs smaller than this are read too fast for a progress line to help.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
#: Inputs from this size on are read by a second process (``analyzer.pipeline``) when a CPU is free
#: for it: forking costs a few milliseconds, reading 16 MB about 0.1 s.
PIPELINE_MIN_BYTES = 16 * 1024 * 1024
#: CPUs that must be free beside this process's own for the reading child (``_free_cpus``): most of
#: one, or the child shares a CPU with the rules and reading in two processes is slower than in one.
PIPELINE_MIN_FREE_CPUS = 0.75
#: Reads of the running tasks for ``_free_cpus`` and the pause between two: 10 ms in all, against the
#: 0.5 s or more that an input of ``PIPELINE_MIN_BYTES`` takes.
FREE_CPU_SAMPLES = 3
FREE_CPU_SAMPLE_GAP_S = 0.005
#: What ``prometheus`` reads when neither ``since_ns`` nor ``until_ns`` is given: the last hour.
PROMETHEUS_DEFAULT_RANGE_NS: Final = 3600 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """What to analyze and how; the fields are the options of ``amqadf-analyze``.

    The values are taken as given: the command checks them (a positive ``slow_query_ms``, ``window``,
    ``step`` and ``cpu_count``) before it builds the options.
    """

    #: Telemetry files, or directories searched recursively for ``*.json``/``*.jsonl`` (and ``.gz``).
    paths: Sequence[str | os.PathLike[str]] = ()
    #: A Prometheus-compatible HTTP API to read the metric series the rules need from, or ``None``.
    prometheus: str | None = None
    #: Resolution of the ``prometheus`` range queries, in seconds (``prometheus_source.DEFAULT_STEP_S``).
    step: float = 15.0
    #: A statement whose p95 reaches this many milliseconds is a slow query.
    slow_query_ms: float = 500.0
    #: Length of a scaling window in seconds; ``None``: chosen from the data (see the module docstring).
    window: float | None = None
    #: Only data at or after / at or before these times (ns since the epoch).
    since_ns: int | None = None
    until_ns: int | None = None
    #: Only the telemetry of this ``service.name``.
    service: str | None = None
    #: Logical CPUs that cap CPU-bound worker pools, overriding ``system.cpu.logical.count``.
    cpu_count: int | None = None
    #: Stop at the first unreadable file or line (a ``TelemetryInputError``) instead of counting it.
    strict: bool = False
    #: A database to ask the planner's verdict on each index candidate (``analyzer.explain``): a
    #: ``postgresql://`` URL or a SQLite path; ``None``: candidates stay unverified. Holds a password.
    explain: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(os.fspath(path) for path in self.paths))


@dataclass(frozen=True, slots=True)
class Analysis:
    """The outcome of one run: what the report shows."""

    #: What the input held (services, time range, counts, the problems skipped).
    summary: Summary
    #: Every rule's findings, ranked (``Recommendation.sort_key``: most time at stake first).
    recommendations: tuple[Recommendation, ...]
    #: The ``scaling``, ``cache``, ``threads``, ``top_queries`` and ``data_quality`` report sections.
    sections: dict[str, Any]
    #: Files, lines and problems of the read.
    stats: ReadStats
    #: The options the run used (with ``since_ns``/``until_ns`` filled in for ``prometheus``).
    options: AnalysisOptions = field(repr=False)


def analyze(options: AnalysisOptions, *, progress: TextIO | None = None) -> Analysis:
    """Read the telemetry ``options`` name and run every rule over it in one pass.

    ``progress``: a stream (stderr) on which a progress line is redrawn while a large input is read,
    when that stream is a terminal. Raises ``AmqadfError`` (``TelemetryInputError`` for bad input with
    ``strict``, an unreachable or wrong ``prometheus``; ``ReaderProcessError``) or, as a last resort,
    ``OSError``. An input without records is not an error: ``summary.records`` is then 0.
    """
    paths = [os.fspath(path) for path in options.paths]
    service, since_ns, until_ns = options.service, options.since_ns, options.until_ns
    prometheus: Iterable[Record] = ()
    url = options.prometheus
    if url is not None:
        from amqadf_agent.analyzer.prometheus_source import read_prometheus

        end_ns = time.time_ns() if until_ns is None else until_ns
        start_ns = end_ns - PROMETHEUS_DEFAULT_RANGE_NS if since_ns is None else since_ns
        since_ns, until_ns = start_ns, end_ns
        options = replace(options, since_ns=since_ns, until_ns=until_ns)
        prometheus = read_prometheus(
            url, start=start_ns / 1e9, end=end_ns / 1e9, step=options.step, service=service
        )
    stats = ReadStats()
    sql.reset()  # sqlglot's budget of distinct statements is per analysis
    database = DatabaseRules(DatabaseRuleConfig(slow_query_s=options.slow_query_ms / 1000))
    windows = WindowAggregator(options.window, service=service, since_ns=since_ns, until_ns=until_ns)
    caches = CacheRules(service=service, since_ns=since_ns, until_ns=until_ns)
    threads = ThreadRules(
        ThreadRuleConfig(window_s=options.window or DEFAULT_WINDOW_S, cpu_count=options.cpu_count),
        service=service,
        since_ns=since_ns,
        until_ns=until_ns,
    )
    endpoints = EndpointRules(
        service=service, since_ns=since_ns, until_ns=until_ns, slow_query_s=options.slow_query_ms / 1000
    )
    shapes = TraceShapeRules(service=service, since_ns=since_ns, until_ns=until_ns)
    impact = ImpactFeed(database, service=service, since_ns=since_ns, until_ns=until_ns, shapes=shapes)
    pools = PoolRules(service=service, since_ns=since_ns, until_ns=until_ns)
    router = RecordRouter(
        database, (windows, caches, threads, endpoints, shapes, pools, impact), service, since_ns, until_ns
    )
    # One pass: the rules see every record on its way to the summary.
    records: Iterable[Record] = ()
    if paths and _wants_pipeline(paths):
        from amqadf_agent.analyzer.pipeline import read_pipelined

        records = read_pipelined(paths, strict=options.strict, stats=stats)
    elif paths:
        records = read(paths, strict=options.strict, stats=stats)
    if url is not None:
        records = itertools.chain(records, prometheus)
    if progress is not None and _wants_progress(paths, progress):
        records = _progress(records, stats, progress)
    saved_gc = gc.get_threshold()
    if saved_gc[0]:  # 0: automatic collection is off, leave it so
        gc.set_threshold(max(saved_gc[0], GC_YOUNG_THRESHOLD), *saved_gc[1:])
    try:
        summary = summarize(router.run(records), stats)
        router.dedup.flush()
        found = database.recommendations()
        found, verdicts = apply_verdicts(found, options.explain)
        timeline = windows.windows()  # with no window given, this settles windows.window_s
        scaling = analyze_scaling(
            timeline,
            window_seconds=int(windows.window_s)
            if float(windows.window_s).is_integer()
            else round(windows.window_s),
            service=options.service,
            database_findings=found,
            db_services=router.db_services,
            non_serving_instances=windows.non_serving_instances(),
        )
        shape_findings = shapes.recommendations()  # (read every trace: the feed has their savings now)
        estimates = estimate(impact, [*found, *shape_findings], verdicts, timeline)
        recommendations = ranked(
            [
                *found,
                *scaling.recommendations,
                *caches.recommendations(),
                *threads.recommendations(),
                *shape_findings,
                *pools.recommendations(),
            ],
            estimates,
        )
        sections = {
            "scaling": scaling.to_json(),
            "cache": [cache.to_dict() for cache in caches.stats()],
            "threads": threads.to_json(),
            "top_queries": top_queries(database.statements()),
            # What the metric rules left out, for the report to say (a point may count in several).
            "data_quality": {
                "skipped_points": {
                    "scaling": windows.skipped_points,
                    "cache": caches.skipped_points,
                    "threads": threads.skipped_points,
                },
                "implausible_intervals": windows.implausible_intervals,
                "db_calls_not_analysed": database.calls_not_kept,
                "call_findings_not_kept": shapes.not_kept,
                "points_not_kept": {
                    "cache": caches.points_not_kept,
                    "threads": threads.points_not_kept,
                    "pools": pools.points_not_kept,
                },
            },
            "impact": impact_json(estimates),
        }
        endpoints.link(recommendations)
        sections["top_routes"] = endpoints.to_json()
        sections["duplicates"] = router.dedup.to_json()
        return Analysis(summary, tuple(recommendations), sections, stats, options)
    finally:
        gc.set_threshold(*saved_gc)


class RuleFeed(Protocol):
    """A rule that reads every record itself (the metric rules: windows, caches, threads)."""

    #: The span kinds it reads; spans of other kinds never reach ``add``.
    SPAN_KINDS: ClassVar[frozenset[int]]

    def add(self, record: Record) -> None: ...


class RecordRouter:
    """Passes records through, feeding the rules on the way, and applies the service and time filters
    to what the summary and the database rules see (the metric rules apply them themselves, since
    cumulative points before ``since_ns`` are their baselines)."""

    def __init__(
        self,
        database: DatabaseRules,
        feeds: tuple[RuleFeed, ...],
        service: str | None,
        since_ns: int | None,
        until_ns: int | None,
    ) -> None:
        self.database = database
        #: Every record goes to each feed's ``add``, except spans of a kind it does not read (most spans:
        #: the metric rules read server spans only), which it is not even called for.
        self.feeds = tuple(feed.add for feed in feeds)
        self.span_feeds: dict[int, tuple[Callable[[Record], None], ...]] = {
            kind: tuple(feed.add for feed in feeds if kind in feed.SPAN_KINDS)
            for kind in {kind for feed in feeds for kind in feed.SPAN_KINDS}
        }
        self.service = service
        self.since_ns = since_ns
        self.until_ns = until_ns
        #: Db spans pass through it to the database rules: a call two instrumentations saw counts once.
        self.dedup = CallDeduplicator(database.add_span)

    @property
    def db_services(self) -> set[str]:
        """Services whose db client spans reached the database rules."""
        return self.database.services()

    def _inside(self, time_ns: int) -> bool:
        if self.since_ns is not None and time_ns < self.since_ns:
            return False
        return not (self.until_ns is not None and time_ns > self.until_ns)

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        """Yield the records the summary counts, after feeding every record to the rules."""
        add = self.dedup.add
        feeds = self.feeds
        span_feeds = self.span_feeds
        no_feeds: tuple[Callable[[Record], None], ...] = ()
        service = self.service
        timed = self.since_ns is not None or self.until_ns is not None
        last_resource: object = None
        keep = True
        name = ""
        for record in records:
            for feed in span_feeds.get(record.kind, no_feeds) if type(record) is SpanRecord else feeds:
                feed(record)
            if record.resource is not last_resource:
                last_resource = record.resource
                name = service_name(record.resource)
                keep = service is None or name == service
            if not keep:
                continue
            if type(record) is SpanRecord:
                if timed and not self._inside(record.end_ns):
                    continue
                if record.kind == SPAN_KIND_CLIENT:
                    add(record)
                elif record.events:  # the agent's N+1 event sits on the run's parent
                    self.database.add_span(record)
            elif timed and type(record) is MetricRecord:
                points = tuple(p for p in record.points if self._inside(p.time_ns))
                if not points:
                    continue
                if len(points) != len(record.points):
                    record = replace(record, points=points)
            elif timed and type(record) is LogRecord and not self._inside(record.timestamp_ns):
                continue
            yield record


def _wants_pipeline(paths: list[str]) -> bool:
    """Read in a second process: only for a large input, and only when a CPU is free for the child
    beside this process's own (``_free_cpus``); on a busy machine the child would take turns with the
    rules on the same CPUs, and two processes are then slower than one."""
    if not hasattr(os, "fork") or not _input_reaches(paths, PIPELINE_MIN_BYTES):
        return False
    return _free_cpus() >= PIPELINE_MIN_FREE_CPUS


def _free_cpus() -> float:
    """CPUs free beside this process's own: those it may run on, less one for itself and the other
    tasks running now (Linux: ``procs_running`` of ``/proc/stat``, ``FREE_CPU_SAMPLES`` reads a few
    milliseconds apart, averaged; elsewhere the 1-minute load average, which lags). The count is
    machine-wide: when this process may use only some of the CPUs, it errs towards one process."""
    mine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    machine = os.cpu_count() or mine
    counts = []
    for sample in range(FREE_CPU_SAMPLES):
        if sample:
            time.sleep(FREE_CPU_SAMPLE_GAP_S)
        running = _running_tasks()
        if running is None:
            break
        counts.append(running - 1)  # less this process
    if counts:
        others = sum(counts) / len(counts)
    else:
        try:
            others = os.getloadavg()[0]
        except (AttributeError, OSError):  # neither (Windows): what this process may use
            others = 0.0
    return min(mine - 1, machine - 1 - others)


def _running_tasks(path: str = "/proc/stat") -> int | None:
    """Tasks runnable right now, this one included (Linux), or None when ``path`` cannot tell."""
    try:
        with open(path, "rb") as stat:
            for line in stat:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _input_reaches(paths: list[str], size: int) -> bool:
    """True when the files at ``paths`` (directories searched) hold at least ``size`` bytes; what
    cannot be read counts for nothing (the reader reports it)."""

    def size_of(path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    total = 0
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, files in os.walk(path):
                total += sum(size_of(os.path.join(root, name)) for name in files)
        elif os.path.isfile(path):
            total += size_of(path)
        if total >= size:
            return True
    return False


def _wants_progress(paths: list[str], err: TextIO) -> bool:
    """A progress line on ``err``: only on a terminal, and only for large inputs."""
    isatty = getattr(err, "isatty", None)
    if not paths or not callable(isatty) or not isatty():
        return False
    return _input_reaches(paths, PROGRESS_MIN_BYTES)


def _progress(records: Iterable[Record], stats: ReadStats, err: TextIO) -> Iterator[Record]:
    """Pass records through, redrawing one line on ``err`` at most 4 times a second."""
    last = 0.0
    count = 0
    for count, record in enumerate(records, 1):
        if not count & 1023 and (now := time.monotonic()) - last > 0.25:
            last = now
            err.write(
                f"\rreading: {stats.files_read} file(s), {stats.lines_read:,} line(s), {count:,} record(s)"
            )
            err.flush()
        yield record
    err.write(f"\rread {stats.files_read} file(s), {stats.lines_read:,} line(s), {count:,} record(s)\n")
    err.flush()

"""The telemetry contract: every name the agent emits and the analyzer reads, defined once.

Emitters, the analyzer, the dashboards and the tests all read this module; docs/telemetry-contract.md
is rendered from it (``python docs/generate_contract.py``) and a test keeps the two in step.

Where OpenTelemetry has a semantic convention, its name is used: stable attribute keys come straight
from the constants of ``opentelemetry-semantic-conventions``; incubating ones are written out (their
modules cost ~6 ms of every start) and checked like the metric names. Standard *metric* names are written out
here because their constants live in modules that import the OpenTelemetry metrics API (~20 ms),
which the analyzer must not pay for; ``tests/test_package.py`` checks each one against the library's
constant. Where no convention exists (caches, worker pools, the agent's own health) the names live
under ``amqadf.*``, modelled on Micrometer's ``cache.*`` and .NET's ``dotnet.thread_pool.*``.

This module imports nothing of the package and no OpenTelemetry API or SDK.

Why one module of about 1,000 lines: it is the one table of the contract; a name defined in one place
is the point of it.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from opentelemetry.semconv.attributes.code_attributes import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    CODE_STACKTRACE,
)
from opentelemetry.semconv.attributes.db_attributes import (
    DB_OPERATION_NAME,
    DB_QUERY_SUMMARY,
    DB_QUERY_TEXT,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS
from opentelemetry.semconv.attributes.service_attributes import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
)
from opentelemetry.semconv.attributes.telemetry_attributes import (
    TELEMETRY_DISTRO_NAME,
    TELEMETRY_DISTRO_VERSION,
)

# Incubating attribute keys, written out: their modules cost ~6 ms of every start (db_attributes alone
# holds hundreds of names); ``tests/test_package.py`` checks each one against the library's constant.
CPU_MODE: Final = "cpu.mode"
DB_CLIENT_CONNECTION_POOL_NAME: Final = "db.client.connection.pool.name"
DB_CLIENT_CONNECTION_STATE: Final = "db.client.connection.state"
DB_QUERY_PARAMETER_TEMPLATE: Final = "db.query.parameter"
DB_RESPONSE_RETURNED_ROWS: Final = "db.response.returned_rows"
DEPLOYMENT_ENVIRONMENT_NAME: Final = "deployment.environment.name"
DISK_IO_DIRECTION: Final = "disk.io.direction"
HOST_ARCH: Final = "host.arch"
HOST_NAME: Final = "host.name"
HTTP_METHOD: Final = "http.method"
HTTP_STATUS_CODE: Final = "http.status_code"
NETWORK_INTERFACE_NAME: Final = "network.interface.name"
NETWORK_IO_DIRECTION: Final = "network.io.direction"
OS_TYPE: Final = "os.type"
OTEL_COMPONENT_NAME: Final = "otel.component.name"
OTEL_COMPONENT_TYPE: Final = "otel.component.type"
PROCESS_EXECUTABLE_NAME: Final = "process.executable.name"
PROCESS_PID: Final = "process.pid"
PROCESS_RUNTIME_NAME: Final = "process.runtime.name"
PROCESS_RUNTIME_VERSION: Final = "process.runtime.version"
SERVICE_NAMESPACE: Final = "service.namespace"
SYSTEM_DEVICE: Final = "system.device"
SYSTEM_FILESYSTEM_MOUNTPOINT: Final = "system.filesystem.mountpoint"
SYSTEM_FILESYSTEM_STATE: Final = "system.filesystem.state"
SYSTEM_MEMORY_STATE: Final = "system.memory.state"

Kind = Literal[
    "counter",
    "updowncounter",
    "histogram",
    "gauge",
    "observable_counter",
    "observable_updowncounter",
    "observable_gauge",
]

#: Name under which the agent reports itself (``telemetry.distro.name``, instrumentation scope).
DISTRO_NAME: Final = "amqadf-agent"
#: Instrumentation scope of everything the agent emits itself.
SCOPE_NAME: Final = "amqadf_agent"

# --- attribute keys: standard ---------------------------------------------------------------------
ATTR_SERVICE_NAME: Final = SERVICE_NAME
ATTR_SERVICE_VERSION: Final = SERVICE_VERSION
ATTR_SERVICE_NAMESPACE: Final = SERVICE_NAMESPACE
ATTR_SERVICE_INSTANCE_ID: Final = SERVICE_INSTANCE_ID
ATTR_DEPLOYMENT_ENVIRONMENT_NAME: Final = DEPLOYMENT_ENVIRONMENT_NAME
ATTR_HOST_NAME: Final = HOST_NAME
ATTR_HOST_ARCH: Final = HOST_ARCH
ATTR_OS_TYPE: Final = OS_TYPE
ATTR_PROCESS_PID: Final = PROCESS_PID
ATTR_PROCESS_EXECUTABLE_NAME: Final = PROCESS_EXECUTABLE_NAME
ATTR_PROCESS_RUNTIME_NAME: Final = PROCESS_RUNTIME_NAME
ATTR_PROCESS_RUNTIME_VERSION: Final = PROCESS_RUNTIME_VERSION
ATTR_TELEMETRY_DISTRO_NAME: Final = TELEMETRY_DISTRO_NAME
ATTR_TELEMETRY_DISTRO_VERSION: Final = TELEMETRY_DISTRO_VERSION
ATTR_ERROR_TYPE: Final = ERROR_TYPE
ATTR_OTEL_COMPONENT_TYPE: Final = OTEL_COMPONENT_TYPE
ATTR_CPU_MODE: Final = CPU_MODE
ATTR_SYSTEM_MEMORY_STATE: Final = SYSTEM_MEMORY_STATE
ATTR_SYSTEM_DEVICE: Final = SYSTEM_DEVICE
ATTR_SYSTEM_FILESYSTEM_STATE: Final = SYSTEM_FILESYSTEM_STATE
ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT: Final = SYSTEM_FILESYSTEM_MOUNTPOINT
ATTR_DISK_IO_DIRECTION: Final = DISK_IO_DIRECTION
ATTR_NETWORK_INTERFACE_NAME: Final = NETWORK_INTERFACE_NAME
ATTR_NETWORK_IO_DIRECTION: Final = NETWORK_IO_DIRECTION
ATTR_OTEL_COMPONENT_NAME: Final = OTEL_COMPONENT_NAME
ATTR_HTTP_REQUEST_METHOD: Final = HTTP_REQUEST_METHOD
ATTR_HTTP_ROUTE: Final = HTTP_ROUTE
ATTR_HTTP_RESPONSE_STATUS_CODE: Final = HTTP_RESPONSE_STATUS_CODE
ATTR_SERVER_ADDRESS: Final = SERVER_ADDRESS
ATTR_DB_SYSTEM_NAME: Final = DB_SYSTEM_NAME
ATTR_DB_QUERY_TEXT: Final = DB_QUERY_TEXT
#: Low-cardinality operation and targets of a statement (``SELECT orders``); the agent sets it on a db
#: client span that has a statement and none of its own (``statements.summary``).
ATTR_DB_QUERY_SUMMARY: Final = DB_QUERY_SUMMARY
ATTR_DB_OPERATION_NAME: Final = DB_OPERATION_NAME
ATTR_DB_RESPONSE_RETURNED_ROWS: Final = DB_RESPONSE_RETURNED_ROWS
ATTR_DB_CLIENT_CONNECTION_POOL_NAME: Final = DB_CLIENT_CONNECTION_POOL_NAME
ATTR_DB_CLIENT_CONNECTION_STATE: Final = DB_CLIENT_CONNECTION_STATE  # used | idle
ATTR_CODE_FUNCTION_NAME: Final = CODE_FUNCTION_NAME
ATTR_CODE_FILE_PATH: Final = CODE_FILE_PATH
ATTR_CODE_LINE_NUMBER: Final = CODE_LINE_NUMBER
ATTR_CODE_STACKTRACE: Final = CODE_STACKTRACE
#: The code attributes before semconv 1.30; the analyzer reads them where the current ones are missing.
ATTR_CODE_FUNCTION_OLD: Final = "code.function"
ATTR_CODE_FILEPATH_OLD: Final = "code.filepath"
ATTR_CODE_LINENO_OLD: Final = "code.lineno"
#: Older names that instrumentations and stored telemetry still carry; readers accept both.
ATTR_DB_STATEMENT_OLD: Final = "db.statement"
ATTR_DB_SYSTEM_OLD: Final = "db.system"
ATTR_DB_OPERATION_OLD: Final = "db.operation"
#: Bind parameters as the DB-API instrumentations record them with ``capture_parameters=True``
#: (``str()`` of the parameter sequence); the current convention is one ``db.query.parameter.<key>``
#: attribute per parameter. Read only to tell identical repeats apart, never reported.
ATTR_DB_STATEMENT_PARAMETERS_OLD: Final = "db.statement.parameters"
ATTR_DB_QUERY_PARAMETER_PREFIX: Final = DB_QUERY_PARAMETER_TEMPLATE + "."
#: HTTP names before the stable HTTP conventions (semconv 1.20 and older; instrumentations still emit
#: them by default or beside the new ones with ``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup``).
ATTR_HTTP_STATUS_CODE_OLD: Final = HTTP_STATUS_CODE
ATTR_HTTP_METHOD_OLD: Final = HTTP_METHOD
#: The older HTTP server duration histogram: in milliseconds (``http.server.request.duration`` is in
#: seconds). The analyzer reads it where the current one is missing, converted to seconds.
HTTP_SERVER_DURATION_OLD: Final = "http.server.duration"
HTTP_SERVER_DURATION_OLD_UNIT: Final = "ms"
#: Where an outbound HTTP call went (stable names, then the older ones): the trace-shape rules
#: template the URL to group calls (analyzer.rules.http_calls).
ATTR_URL_FULL: Final = "url.full"
ATTR_URL_PATH: Final = "url.path"
ATTR_SERVER_PORT: Final = "server.port"
ATTR_HTTP_URL_OLD: Final = "http.url"
ATTR_HTTP_TARGET_OLD: Final = "http.target"
ATTR_NET_PEER_NAME_OLD: Final = "net.peer.name"
#: Connection-pool metrics before semconv 1.26 (``db.client.connections.*``, attributes ``state`` and
#: ``pool.name``, wait times in ms), as the SQLAlchemy instrumentation still records them.
DB_CLIENT_CONNECTIONS_USAGE_OLD: Final = "db.client.connections.usage"
DB_CLIENT_CONNECTIONS_MAX_OLD: Final = "db.client.connections.max"
DB_CLIENT_CONNECTIONS_WAIT_TIME_OLD: Final = "db.client.connections.wait_time"
DB_CLIENT_CONNECTIONS_PENDING_OLD: Final = "db.client.connections.pending_requests"
DB_CLIENT_CONNECTION_PENDING: Final = "db.client.connection.pending_requests"
ATTR_STATE_OLD: Final = "state"
ATTR_POOL_NAME_OLD: Final = "pool.name"
#: On the ASGI instrumentation's INTERNAL spans of each message a request sends or receives
#: (``GET /x http send``, ``http receive``; FastAPI's and Starlette's too): the server's own I/O, which
#: the trace-shape rules do not count as work the request started.
ATTR_ASGI_EVENT_TYPE: Final = "asgi.event.type"

# --- attribute keys: ours (no convention exists) ----------------------------------------------------
ATTR_CACHE_NAME: Final = "amqadf.cache.name"
ATTR_CACHE_RESULT: Final = "amqadf.cache.result"  # hit | miss
ATTR_POOL_NAME: Final = "amqadf.worker_pool.name"
ATTR_POOL_STATE: Final = "amqadf.worker_pool.state"  # busy | idle
ATTR_TASK_OUTCOME: Final = "amqadf.task.outcome"  # success | failure
ATTR_LB_NAME: Final = "amqadf.loadbalancer.name"
ATTR_LB_WORKER: Final = "amqadf.loadbalancer.worker"
ATTR_SCALER_NAME: Final = "amqadf.autoscaler.name"
ATTR_SCALER_ACTION: Final = "amqadf.autoscaler.action"  # scale_up | scale_down | no_action
ATTR_SCALER_LIMITED_BY: Final = (
    "amqadf.autoscaler.limited_by"  # tolerance | stabilization | policy | bounds | …
)
ATTR_SCALER_CURRENT: Final = "amqadf.autoscaler.current"  # on the decision event: instances now
ATTR_SCALER_TARGET: Final = "amqadf.autoscaler.target"  # on the decision event: instances decided
ATTR_SCALER_REASON: Final = "amqadf.autoscaler.reason"  # on the decision event: why, one line
ATTR_SCALER_METRIC: Final = "amqadf.autoscaler.metric"  # the metric that set the recommendation
ATTR_RETRY_POLICY: Final = "amqadf.retry.policy"
#: successful_without_retry | successful_with_retry | failed_without_retry | failed_with_retry
#: (resilience4j's ``resilience4j.retry.calls`` kinds)
ATTR_RETRY_KIND: Final = "amqadf.retry.kind"
#: Why retrying stopped: exhausted | budget | elapsed | not_retryable (failed calls only)
ATTR_RETRY_STOP: Final = "amqadf.retry.stop_reason"
ATTR_RETRY_ATTEMPT: Final = "amqadf.retry.attempt"  # on the retry event: the attempt that failed (1-based)
ATTR_RETRY_DELAY: Final = "amqadf.retry.delay"  # on the retry event: seconds until the next attempt
ATTR_BREAKER_NAME: Final = "amqadf.circuit_breaker.name"
#: closed | open | half_open | forced_open | disabled | metrics_only
ATTR_BREAKER_STATE: Final = "amqadf.circuit_breaker.state"
ATTR_BREAKER_FROM: Final = "amqadf.circuit_breaker.from_state"
ATTR_BREAKER_TO: Final = "amqadf.circuit_breaker.to_state"
#: success | failure | slow_success | slow_failure | ignored | rejected
ATTR_BREAKER_OUTCOME: Final = "amqadf.circuit_breaker.outcome"
ATTR_FALLBACK_NAME: Final = "amqadf.fallback.name"
ATTR_TIMEOUT_NAME: Final = "amqadf.timeout.name"
ATTR_RESOURCE_KIND: Final = "amqadf.resource.kind"  # cpu | memory | disk
ATTR_RESOURCE_VALUE: Final = "amqadf.resource.value"  # on the limit event: the sampled fraction
ATTR_RESOURCE_THRESHOLD: Final = "amqadf.resource.threshold"  # on the limit event: the limit, a fraction
ATTR_PROFILER_KIND: Final = "amqadf.profiler.kind"  # cpu | memory
ATTR_PROFILER_FUNCTION: Final = "amqadf.profiler.function"  # qualified name of the profiled callable
ATTR_RATE_LIMITER_NAME: Final = "amqadf.rate_limiter.name"
ATTR_RATE_LIMITER_OUTCOME: Final = "amqadf.rate_limiter.outcome"  # permitted | rejected
ATTR_RATE_LIMITER_RETRY_AFTER: Final = "amqadf.rate_limiter.retry_after"  # on the rejection event, seconds
ATTR_STATE_STORE: Final = "amqadf.state_store.kind"  # redis
ATTR_AGENT_SIGNAL: Final = "amqadf.agent.signal"  # traces | metrics | logs
ATTR_AGENT_EXPORTER: Final = "amqadf.agent.exporter"  # file | otlp | console | prometheus
ATTR_AGENT_THREAD: Final = "amqadf.agent.thread"  # which background thread spent the CPU
#: On a db client span whose statement had literals the agent rewrote as ``?`` (bool, true).
ATTR_DB_QUERY_SANITIZED: Final = "amqadf.db.query.sanitized"
#: On a sanitized db client span: a short keyed digest of the literal and bound values taken out
#: (the key is the process's own), so "same statement, same values" in one trace can still be told.
ATTR_DB_QUERY_VALUES_DIGEST: Final = "amqadf.db.query.values_digest"

CACHE_RESULT_HIT: Final = "hit"
CACHE_RESULT_MISS: Final = "miss"
POOL_STATE_BUSY: Final = "busy"
POOL_STATE_IDLE: Final = "idle"
OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"

#: Bucket boundaries for every histogram in seconds. The SDK's defaults (0, 5, 10 … 10000) fit
#: milliseconds: values in seconds would all land in the first bucket.
SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Instrument:
    """One metric of the contract: what it is called, what it measures, who writes and reads it."""

    name: str
    kind: Kind
    unit: str
    description: str
    attributes: tuple[str, ...]
    emitted_by: str
    read_by: str
    #: True where the name comes from an OpenTelemetry semantic convention.
    standard: bool = False
    #: Explicit histogram bucket boundaries (histograms in seconds need them).
    buckets: tuple[float, ...] | None = None


# --- instruments ----------------------------------------------------------------------------------
HTTP_SERVER_REQUEST_DURATION = Instrument(
    "http.server.request.duration", "histogram", "s",
    "Duration of HTTP server requests.",
    (ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_ROUTE, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_ERROR_TYPE),
    "monitoring.requests (record_request, track_request); HTTP instrumentations",
    "analyzer (request rate, errors, latency)",
    standard=True, buckets=SECONDS_BUCKETS,
)  # fmt: skip
_CACHE_EMITTERS: Final = (
    "monitoring.cache (InstrumentedCache, instrument_lru_cache, track_cachetools, record_cache)"
)
DB_CLIENT_OPERATION_DURATION = Instrument(
    "db.client.operation.duration", "histogram", "s",
    "Duration of database client operations.",
    (ATTR_DB_SYSTEM_NAME, ATTR_DB_OPERATION_NAME),
    "demo service (its queries); database instrumentations that record it", "dashboards (performance)",
    standard=True, buckets=SECONDS_BUCKETS,
)  # fmt: skip
DB_CLIENT_CONNECTION_MAX = Instrument(
    "db.client.connection.max", "observable_updowncounter", "{connection}",
    "Size of a database connection pool (what caps the worker threads that use it).",
    (ATTR_DB_CLIENT_CONNECTION_POOL_NAME,),
    "database connection pools (instrumentations that record it)",
    "analyzer (thread rules: downstream cap; pool rules)",
    standard=True,
)  # fmt: skip
DB_CLIENT_CONNECTION_COUNT = Instrument(
    "db.client.connection.count", "updowncounter", "{connection}",
    "Connections of a database connection pool by state (used or idle).",
    (ATTR_DB_CLIENT_CONNECTION_STATE, ATTR_DB_CLIENT_CONNECTION_POOL_NAME),
    "database connection pools (instrumentations that record it)", "analyzer (pool rules: saturation)",
    standard=True,
)  # fmt: skip
DB_CLIENT_CONNECTION_WAIT_TIME = Instrument(
    "db.client.connection.wait_time", "histogram", "s",
    "Time it took to obtain an open connection from the pool.",
    (ATTR_DB_CLIENT_CONNECTION_POOL_NAME,),
    "database connection pools (instrumentations that record it)", "analyzer (pool rules: waits)",
    standard=True, buckets=SECONDS_BUCKETS,
)  # fmt: skip
CACHE_REQUESTS = Instrument(
    "amqadf.cache.requests", "observable_counter", "{request}",
    "Cache look-ups by result (hit or miss).",
    (ATTR_CACHE_NAME, ATTR_CACHE_RESULT),
    _CACHE_EMITTERS, "analyzer (cache rules)",
)  # fmt: skip
CACHE_EVICTIONS = Instrument(
    "amqadf.cache.evictions", "observable_counter", "{entry}",
    "Entries evicted to make room (not expirations); estimated for functools.lru_cache.",
    (ATTR_CACHE_NAME,),
    _CACHE_EMITTERS, "analyzer (cache rules)",
)  # fmt: skip
CACHE_EXPIRATIONS = Instrument(
    "amqadf.cache.expirations", "observable_counter", "{entry}",
    "Entries dropped because their TTL ran out (a TTL miss, not a capacity miss).",
    (ATTR_CACHE_NAME,),
    _CACHE_EMITTERS, "analyzer (cache rules)",
)  # fmt: skip
CACHE_MEMORY_USAGE = Instrument(
    "amqadf.cache.memory.usage", "observable_updowncounter", "By",
    "Memory the cache uses (Redis: used_memory from INFO).",
    (ATTR_CACHE_NAME,),
    "monitoring.redis_info (RedisCacheMonitor)", "analyzer (cache rules)",
)  # fmt: skip
CACHE_MEMORY_LIMIT = Instrument(
    "amqadf.cache.memory.limit", "observable_updowncounter", "By",
    "Memory the cache may use (Redis: maxmemory; absent when unlimited).",
    (ATTR_CACHE_NAME,),
    "monitoring.redis_info (RedisCacheMonitor)", "analyzer (cache rules)",
)  # fmt: skip
CACHE_SIZE = Instrument(
    "amqadf.cache.size", "observable_updowncounter", "{entry}",
    "Entries currently held.",
    (ATTR_CACHE_NAME,),
    _CACHE_EMITTERS, "analyzer (cache rules)",
)  # fmt: skip
CACHE_MAX_SIZE = Instrument(
    "amqadf.cache.max_size", "observable_updowncounter", "{entry}",
    "Capacity of the cache in entries.",
    (ATTR_CACHE_NAME,),
    _CACHE_EMITTERS, "analyzer (cache rules)",
)  # fmt: skip
POOL_WORKERS = Instrument(
    "amqadf.worker_pool.workers", "observable_updowncounter", "{thread}",
    "Worker threads by state (busy or idle).",
    (ATTR_POOL_NAME, ATTR_POOL_STATE),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
)  # fmt: skip
POOL_MAX_WORKERS = Instrument(
    "amqadf.worker_pool.max_workers", "observable_updowncounter", "{thread}",
    "Configured maximum number of worker threads.",
    (ATTR_POOL_NAME,),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
)  # fmt: skip
POOL_QUEUE_SIZE = Instrument(
    "amqadf.worker_pool.queue.size", "observable_updowncounter", "{task}",
    "Tasks submitted and waiting for a worker.",
    (ATTR_POOL_NAME,),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
)  # fmt: skip
POOL_TASKS = Instrument(
    "amqadf.worker_pool.tasks", "observable_counter", "{task}",
    "Tasks completed, by outcome.",
    (ATTR_POOL_NAME, ATTR_TASK_OUTCOME),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
)  # fmt: skip
POOL_QUEUE_WAIT = Instrument(
    "amqadf.worker_pool.queue.wait", "histogram", "s",
    "Time a task waited between submission and the start of its execution.",
    (ATTR_POOL_NAME,),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
POOL_TASK_DURATION = Instrument(
    "amqadf.worker_pool.task.duration", "histogram", "s",
    "Time a task ran on a worker thread.",
    (ATTR_POOL_NAME, ATTR_TASK_OUTCOME),
    "monitoring.worker_pool (InstrumentedThreadPoolExecutor)", "analyzer (thread rules)",
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
SYSTEM_CPU_UTILIZATION = Instrument(
    "system.cpu.utilization", "observable_gauge", "1",
    "Share of the machine's CPU time in each mode since the previous sample (0 to 1).",
    (ATTR_CPU_MODE,),
    "monitoring.resources (ResourceMonitor)", "analyzer (autoscaling: CPU)", standard=True,
)  # fmt: skip
SYSTEM_CPU_LOGICAL_COUNT = Instrument(
    "system.cpu.logical.count", "observable_updowncounter", "{cpu}",
    "Logical CPUs of the machine (what caps CPU-bound worker pools).",
    (),
    "monitoring.resources (ResourceMonitor)", "analyzer (thread rules: CPU cap)", standard=True,
)  # fmt: skip
SYSTEM_MEMORY_USAGE = Instrument(
    "system.memory.usage", "observable_updowncounter", "By",
    "Memory in use, by state (used, free, cached, buffers).",
    (ATTR_SYSTEM_MEMORY_STATE,),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
SYSTEM_MEMORY_UTILIZATION = Instrument(
    "system.memory.utilization", "observable_gauge", "1",
    "Share of memory by state (0 to 1).",
    (ATTR_SYSTEM_MEMORY_STATE,),
    "monitoring.resources (ResourceMonitor)", "analyzer (autoscaling: memory)", standard=True,
)  # fmt: skip
SYSTEM_FILESYSTEM_USAGE = Instrument(
    "system.filesystem.usage", "observable_updowncounter", "By",
    "File system space by state (used, free) per mount point.",
    (ATTR_SYSTEM_DEVICE, ATTR_SYSTEM_FILESYSTEM_STATE, ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
SYSTEM_FILESYSTEM_UTILIZATION = Instrument(
    "system.filesystem.utilization", "observable_gauge", "1",
    "Share of file system space by state, per mount point (0 to 1).",
    (ATTR_SYSTEM_DEVICE, ATTR_SYSTEM_FILESYSTEM_STATE, ATTR_SYSTEM_FILESYSTEM_MOUNTPOINT),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
SYSTEM_DISK_IO = Instrument(
    "system.disk.io", "observable_counter", "By",
    "Bytes read and written per disk.",
    (ATTR_SYSTEM_DEVICE, ATTR_DISK_IO_DIRECTION),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
SYSTEM_NETWORK_IO = Instrument(
    "system.network.io", "observable_counter", "By",
    "Bytes received and transmitted per network interface.",
    (ATTR_NETWORK_INTERFACE_NAME, ATTR_NETWORK_IO_DIRECTION),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
PROCESS_CPU_UTILIZATION = Instrument(
    "process.cpu.utilization", "observable_gauge", "1",
    "Share of all CPUs this process used since the previous sample, by mode (0 to 1).",
    (ATTR_CPU_MODE,),
    "monitoring.resources (ResourceMonitor)", "analyzer (thread rules: CPU-bound work)", standard=True,
)  # fmt: skip
PROCESS_CPU_TIME = Instrument(
    "process.cpu.time", "observable_counter", "s",
    "CPU seconds this process used, by mode (user, system).",
    (ATTR_CPU_MODE,),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
PROCESS_MEMORY_USAGE = Instrument(
    "process.memory.usage", "observable_updowncounter", "By",
    "Resident memory of this process (RSS).",
    (),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
PROCESS_MEMORY_VIRTUAL = Instrument(
    "process.memory.virtual", "observable_updowncounter", "By",
    "Virtual memory of this process.",
    (),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
PROCESS_THREAD_COUNT = Instrument(
    "process.thread.count", "observable_updowncounter", "{thread}",
    "Threads of this process.",
    (),
    "monitoring.resources (ResourceMonitor)", "analyzer (thread rules)", standard=True,
)  # fmt: skip
PROCESS_FD_COUNT = Instrument(
    "process.unix.file_descriptor.count", "observable_updowncounter", "{file_descriptor}",
    "Open file descriptors of this process.",
    (),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources)", standard=True,
)  # fmt: skip
RESOURCE_LIMIT_BREACHES = Instrument(
    "amqadf.resource.limit_breaches", "observable_counter", "{breach}",
    "Samples in which a resource was over its configured limit.",
    (ATTR_RESOURCE_KIND,),
    "monitoring.resources (ResourceMonitor)", "dashboards (resources); alerts",
)  # fmt: skip
PROFILE_DURATION = Instrument(
    "amqadf.profiler.duration", "histogram", "s",
    "Wall time of each profiled call, per function.",
    (ATTR_PROFILER_KIND, ATTR_PROFILER_FUNCTION),
    "profiling (PerformanceProfiler)", "dashboards (performance)",
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
PROFILE_FUNCTION_SELF_TIME = Instrument(
    "amqadf.profiler.function.self_time", "observable_counter", "s",
    "Self time of the top functions of the profiles taken (the profiles' hot spots, added up).",
    (ATTR_PROFILER_KIND, ATTR_CODE_FUNCTION_NAME),
    "profiling (PerformanceProfiler)", "dashboards (performance: top profiled functions)",
)  # fmt: skip
PROFILES = Instrument(
    "amqadf.profiler.profiles", "observable_counter", "{profile}",
    "Profiles taken, by kind (cpu with pyinstrument, memory with memray).",
    (ATTR_PROFILER_KIND,),
    "profiling (PerformanceProfiler)", "dashboards (performance)",
)  # fmt: skip
RATE_LIMITER_REQUESTS = Instrument(
    "amqadf.rate_limiter.requests", "observable_counter", "{request}",
    "Requests to a rate limiter, permitted or rejected.",
    (ATTR_RATE_LIMITER_NAME, ATTR_RATE_LIMITER_OUTCOME),
    "resilience.rate_limit (RateLimiter)", "dashboards (resilience)",
)  # fmt: skip
STATE_STORE_FALLBACKS = Instrument(
    "amqadf.state_store.fallbacks", "observable_counter", "{operation}",
    "Operations that fell back to local state because the shared store was unreachable (fail open).",
    (ATTR_STATE_STORE, ATTR_ERROR_TYPE),
    "resilience.stores (RedisStore)", "dashboards (agent health)",
)  # fmt: skip
RETRY_CALLS = Instrument(
    "amqadf.retry.calls", "observable_counter", "{call}",
    "Calls made through a retry policy, by how they ended (resilience4j's kinds).",
    (ATTR_RETRY_POLICY, ATTR_RETRY_KIND),
    "resilience.retry (RetryPolicy)", "dashboards (resilience); analyzer (retry storms)",
)  # fmt: skip
RETRY_RETRIES = Instrument(
    "amqadf.retry.retries", "observable_counter", "{retry}",
    "Retries scheduled (attempts after the first), by the error that caused them.",
    (ATTR_RETRY_POLICY, ATTR_ERROR_TYPE),
    "resilience.retry (RetryPolicy)", "dashboards (resilience); analyzer (retry storms)",
)  # fmt: skip
RETRY_GIVE_UPS = Instrument(
    "amqadf.retry.give_ups", "observable_counter", "{call}",
    "Failed calls, by why retrying stopped (attempts exhausted, retry budget spent, time elapsed, "
    "error not retryable).",
    (ATTR_RETRY_POLICY, ATTR_RETRY_STOP),
    "resilience.retry (RetryPolicy)", "dashboards (resilience)",
)  # fmt: skip
BREAKER_STATE = Instrument(
    "amqadf.circuit_breaker.state", "observable_gauge", "1",
    "1 for the breaker's current state, 0 for the others (one series per state).",
    (ATTR_BREAKER_NAME, ATTR_BREAKER_STATE),
    "resilience.circuit_breaker (CircuitBreaker)", "dashboards (resilience)",
)  # fmt: skip
BREAKER_CALLS = Instrument(
    "amqadf.circuit_breaker.calls", "observable_counter", "{call}",
    "Calls through the breaker by outcome; rejected = not permitted while open.",
    (ATTR_BREAKER_NAME, ATTR_BREAKER_OUTCOME),
    "resilience.circuit_breaker (CircuitBreaker)", "dashboards (resilience)",
)  # fmt: skip
BREAKER_TRANSITIONS = Instrument(
    "amqadf.circuit_breaker.transitions", "observable_counter", "{transition}",
    "State changes of the breaker.",
    (ATTR_BREAKER_NAME, ATTR_BREAKER_FROM, ATTR_BREAKER_TO),
    "resilience.circuit_breaker (CircuitBreaker)", "dashboards (resilience)",
)  # fmt: skip
FALLBACKS = Instrument(
    "amqadf.fallback.invocations", "observable_counter", "{invocation}",
    "Times a fallback value or function was used instead of the failed call.",
    (ATTR_FALLBACK_NAME, ATTR_ERROR_TYPE),
    "resilience.fallback (GracefulDegradation)", "dashboards (resilience)",
)  # fmt: skip
TIMEOUTS = Instrument(
    "amqadf.timeout.timeouts", "observable_counter", "{timeout}",
    "Calls that ran past their time limit.",
    (ATTR_TIMEOUT_NAME,),
    "resilience.timeout (timeout)", "dashboards (resilience)",
)  # fmt: skip
LB_SELECTIONS = Instrument(
    "amqadf.loadbalancer.selections", "observable_counter", "{selection}",
    "Times a worker was selected.",
    (ATTR_LB_NAME, ATTR_LB_WORKER),
    "scaling.load_balancer (LoadBalancer)", "dashboards (scaling)",
)  # fmt: skip
LB_REQUESTS = Instrument(
    "amqadf.loadbalancer.requests", "observable_counter", "{request}",
    "Requests completed through acquire(), by outcome.",
    (ATTR_LB_NAME, ATTR_LB_WORKER, ATTR_TASK_OUTCOME),
    "scaling.load_balancer (LoadBalancer)", "dashboards (scaling)",
)  # fmt: skip
LB_ACTIVE_REQUESTS = Instrument(
    "amqadf.loadbalancer.active_requests", "observable_updowncounter", "{request}",
    "Requests in flight per worker.",
    (ATTR_LB_NAME, ATTR_LB_WORKER),
    "scaling.load_balancer (LoadBalancer)", "dashboards (scaling)",
)  # fmt: skip
LB_WORKER_HEALTHY = Instrument(
    "amqadf.loadbalancer.worker.healthy", "observable_gauge", "1",
    "1 while a worker is healthy, 0 while it is ejected or failing its health check (in panic mode "
    "unhealthy workers still receive traffic).",
    (ATTR_LB_NAME, ATTR_LB_WORKER),
    "scaling.load_balancer (LoadBalancer)", "dashboards (scaling)",
)  # fmt: skip
LB_EJECTIONS = Instrument(
    "amqadf.loadbalancer.ejections", "observable_counter", "{ejection}",
    "Times a worker was ejected by outlier detection.",
    (ATTR_LB_NAME, ATTR_LB_WORKER),
    "scaling.load_balancer (LoadBalancer)", "dashboards (scaling)",
)  # fmt: skip
SCALER_CURRENT = Instrument(
    "amqadf.autoscaler.instances.current", "observable_gauge", "{instance}",
    "Instances running when the last decision was made.",
    (ATTR_SCALER_NAME,),
    "scaling.autoscaler (AutoScaler emitter)", "dashboards (scaling)",
)  # fmt: skip
SCALER_DESIRED = Instrument(
    "amqadf.autoscaler.instances.desired", "observable_gauge", "{instance}",
    "Instances the last decision asked for.",
    (ATTR_SCALER_NAME,),
    "scaling.autoscaler (AutoScaler emitter)", "dashboards (scaling)",
)  # fmt: skip
SCALER_DECISIONS = Instrument(
    "amqadf.autoscaler.decisions", "observable_counter", "{decision}",
    "Scaling decisions by action and by the rule that limited them.",
    (ATTR_SCALER_NAME, ATTR_SCALER_ACTION, ATTR_SCALER_LIMITED_BY),
    "scaling.autoscaler (AutoScaler emitter)", "dashboards (scaling); analyzer (decision timeline)",
)  # fmt: skip
AGENT_CPU_TIME = Instrument(
    "amqadf.agent.cpu.time", "observable_counter", "s",
    "CPU time used by the agent's own background threads (export and collection).",
    (ATTR_AGENT_THREAD,),
    "runtime.selfmetrics", "dashboards (agent health)",
)  # fmt: skip
AGENT_EXPORT_FAILURES = Instrument(
    "amqadf.agent.export.failures", "observable_counter", "{batch}",
    "Export calls that failed or raised; the data of a failed batch is dropped.",
    (ATTR_AGENT_SIGNAL, ATTR_AGENT_EXPORTER, ATTR_ERROR_TYPE),
    "runtime.guard", "dashboards (agent health)",
)  # fmt: skip
AGENT_DROPPED = Instrument(
    "amqadf.agent.telemetry.dropped", "observable_counter", "{item}",
    "Spans, metric data points or log records an export failed to deliver (its batch is dropped); "
    "spans dropped because the queue was full are otel.sdk.processor.span.processed{error.type=queue_full}.",
    (ATTR_AGENT_SIGNAL, ATTR_AGENT_EXPORTER, ATTR_ERROR_TYPE),
    "runtime.guard", "dashboards (agent health)",
)  # fmt: skip
SDK_SPAN_PROCESSED = Instrument(
    "otel.sdk.processor.span.processed", "counter", "{span}",
    "Spans handed to the exporter; with error.type=queue_full, spans the bounded queue dropped.",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME, ATTR_ERROR_TYPE),
    "OpenTelemetry SDK (BatchSpanProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip
SDK_SPAN_QUEUE_CAPACITY = Instrument(
    "otel.sdk.processor.span.queue.capacity", "updowncounter", "{span}",
    "Maximum number of spans the batch processor's queue holds.",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME),
    "OpenTelemetry SDK (BatchSpanProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip
SDK_SPAN_QUEUE_SIZE = Instrument(
    "otel.sdk.processor.span.queue.size", "observable_updowncounter", "{span}",
    "Spans waiting in the batch processor's queue.",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME),
    "OpenTelemetry SDK (BatchSpanProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip
SDK_LOG_PROCESSED = Instrument(
    "otel.sdk.processor.log.processed", "counter", "{log_record}",
    "Log records handed to the exporter; with error.type=queue_full, records the bounded queue dropped.",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME, ATTR_ERROR_TYPE),
    "OpenTelemetry SDK (BatchLogRecordProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip
SDK_LOG_QUEUE_CAPACITY = Instrument(
    "otel.sdk.processor.log.queue.capacity", "updowncounter", "{log_record}",
    "Maximum number of log records the batch processor's queue holds.",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME),
    "OpenTelemetry SDK (BatchLogRecordProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip
SDK_LOG_QUEUE_SIZE = Instrument(
    "otel.sdk.processor.log.queue.size", "observable_updowncounter", "{log}",
    "Log records waiting in the batch processor's queue (the SDK's unit; the convention says {log_record}).",
    (ATTR_OTEL_COMPONENT_TYPE, ATTR_OTEL_COMPONENT_NAME),
    "OpenTelemetry SDK (BatchLogRecordProcessor, wired by runtime.agent)", "dashboards (agent health)",
    standard=True,
)  # fmt: skip

INSTRUMENTS: Final[tuple[Instrument, ...]] = (
    HTTP_SERVER_REQUEST_DURATION,
    DB_CLIENT_OPERATION_DURATION,
    DB_CLIENT_CONNECTION_MAX,
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_WAIT_TIME,
    CACHE_REQUESTS,
    CACHE_EVICTIONS,
    CACHE_EXPIRATIONS,
    CACHE_MEMORY_USAGE,
    CACHE_MEMORY_LIMIT,
    CACHE_SIZE,
    CACHE_MAX_SIZE,
    POOL_WORKERS,
    POOL_MAX_WORKERS,
    POOL_QUEUE_SIZE,
    POOL_TASKS,
    POOL_QUEUE_WAIT,
    POOL_TASK_DURATION,
    SYSTEM_CPU_UTILIZATION,
    SYSTEM_CPU_LOGICAL_COUNT,
    SYSTEM_MEMORY_USAGE,
    SYSTEM_MEMORY_UTILIZATION,
    SYSTEM_FILESYSTEM_USAGE,
    SYSTEM_FILESYSTEM_UTILIZATION,
    SYSTEM_DISK_IO,
    SYSTEM_NETWORK_IO,
    PROCESS_CPU_UTILIZATION,
    PROCESS_CPU_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_THREAD_COUNT,
    PROCESS_FD_COUNT,
    RESOURCE_LIMIT_BREACHES,
    PROFILE_DURATION,
    PROFILE_FUNCTION_SELF_TIME,
    PROFILES,
    RETRY_CALLS,
    RETRY_RETRIES,
    RETRY_GIVE_UPS,
    BREAKER_STATE,
    BREAKER_CALLS,
    BREAKER_TRANSITIONS,
    FALLBACKS,
    TIMEOUTS,
    RATE_LIMITER_REQUESTS,
    STATE_STORE_FALLBACKS,
    LB_SELECTIONS,
    LB_REQUESTS,
    LB_ACTIVE_REQUESTS,
    LB_WORKER_HEALTHY,
    LB_EJECTIONS,
    SCALER_CURRENT,
    SCALER_DESIRED,
    SCALER_DECISIONS,
    AGENT_CPU_TIME,
    AGENT_EXPORT_FAILURES,
    AGENT_DROPPED,
    SDK_SPAN_PROCESSED,
    SDK_SPAN_QUEUE_CAPACITY,
    SDK_SPAN_QUEUE_SIZE,
    SDK_LOG_PROCESSED,
    SDK_LOG_QUEUE_CAPACITY,
    SDK_LOG_QUEUE_SIZE,
)

# --- span names and events --------------------------------------------------------------------------
#: Event on a span when an exception is recorded (OpenTelemetry's exception convention).
EVENT_EXCEPTION: Final = "exception"
#: Event (span event, or log record with this event name) for a decision that changes the count,
#: with ATTR_SCALER_* attributes plus ``amqadf.autoscaler.current``, ``.target`` and ``.reason``.
EVENT_SCALING_DECISION: Final = "amqadf.autoscaler.decision"
#: Span event when a retry is scheduled (ATTR_RETRY_POLICY, ATTR_RETRY_ATTEMPT, ATTR_RETRY_DELAY, error.type).
EVENT_RETRY: Final = "amqadf.retry.scheduled"
#: Span event when a call gives up (ATTR_RETRY_POLICY, ATTR_RETRY_STOP, error.type).
EVENT_RETRY_GIVE_UP: Final = "amqadf.retry.gave_up"
#: Span event on a breaker state change (ATTR_BREAKER_NAME, ATTR_BREAKER_FROM, ATTR_BREAKER_TO).
EVENT_BREAKER_TRANSITION: Final = "amqadf.circuit_breaker.state_changed"
#: Span event when an open breaker rejects a call (ATTR_BREAKER_NAME, ATTR_BREAKER_STATE).
EVENT_BREAKER_REJECTED: Final = "amqadf.circuit_breaker.rejected"
#: Span event when a fallback is used (ATTR_FALLBACK_NAME, error.type).
EVENT_FALLBACK: Final = "amqadf.fallback.used"
#: Span event when a call times out (ATTR_TIMEOUT_NAME).
EVENT_TIMEOUT: Final = "amqadf.timeout.exceeded"
#: Span event when a rate limiter rejects a request (ATTR_RATE_LIMITER_NAME, plus
#: ``amqadf.rate_limiter.retry_after`` in seconds).
EVENT_RATE_LIMITED: Final = "amqadf.rate_limiter.rejected"
#: Event (span event on the current span) when a sample is over a limit (ATTR_RESOURCE_KIND, plus
#: ``amqadf.resource.value`` and ``amqadf.resource.threshold`` as fractions).
EVENT_RESOURCE_LIMIT: Final = "amqadf.resource.limit_exceeded"
#: Name of the span that carries one profile (ATTR_PROFILER_KIND, ATTR_PROFILER_FUNCTION).
SPAN_PROFILE: Final = "amqadf.profile"
#: Name of a child span of a profile span for one frame of the hot path (``code.function.name`` …).
SPAN_PROFILE_FRAME: Final = "amqadf.profile.frame"
#: Attribute on a profile span: where the full profile (speedscope JSON or HTML) was saved.
ATTR_PROFILER_ARTIFACT: Final = "amqadf.profiler.artifact"
# On a profile span: seconds of wall and CPU time, pyinstrument's samples, whether it was profiled
# (false: a sampled-out or over-budget call), memray's peak and totals.
ATTR_PROFILER_DURATION: Final = "amqadf.profiler.duration"
ATTR_PROFILER_CPU_TIME: Final = "amqadf.profiler.cpu_time"
ATTR_PROFILER_SAMPLE_COUNT: Final = "amqadf.profiler.sample_count"
ATTR_PROFILER_PROFILED: Final = "amqadf.profiler.profiled"
ATTR_PROFILER_PEAK_MEMORY: Final = "amqadf.profiler.peak_memory"
ATTR_PROFILER_TOTAL_ALLOCATIONS: Final = "amqadf.profiler.total_allocations"
ATTR_PROFILER_TOTAL_BYTES: Final = "amqadf.profiler.total_bytes"
# On a EVENT_PROFILE_FUNCTION event: seconds (CPU profile), or bytes and allocations (memory).
ATTR_PROFILER_SELF_TIME: Final = "amqadf.profiler.self_time"
ATTR_PROFILER_TOTAL_TIME: Final = "amqadf.profiler.total_time"
ATTR_PROFILER_SITE_BYTES: Final = "amqadf.profiler.bytes"
ATTR_PROFILER_SITE_ALLOCATIONS: Final = "amqadf.profiler.allocations"
#: On a SPAN_PROFILE_FRAME span: its depth below the profile span (1: a direct child).
ATTR_PROFILER_FRAME_DEPTH: Final = "amqadf.profiler.frame.depth"
#: Span event on a profile span, one per top function (``code.function.name``, ``code.file.path``,
#: ``code.line.number``, ``amqadf.profiler.self_time``, ``amqadf.profiler.total_time`` in seconds).
EVENT_PROFILE_FUNCTION: Final = "amqadf.profiler.function"
#: Event when outlier detection ejects a worker (ATTR_LB_NAME, ATTR_LB_WORKER).
EVENT_WORKER_EJECTED: Final = "amqadf.loadbalancer.worker.ejected"
#: Span event on the parent of an N+1 as it happens (once per statement shape per minute): the shape
#: (``db.query.text``), ``db.system.name``, ATTR_N_PLUS_ONE_CALLS, the calling line (``code.*``) and
#: the application's stack (``code.stacktrace``).
EVENT_DB_N_PLUS_ONE: Final = "amqadf.db.n_plus_one"
#: On an EVENT_DB_N_PLUS_ONE event: calls of the shape under the parent when the event was added.
ATTR_N_PLUS_ONE_CALLS: Final = "amqadf.db.n_plus_one.calls"


@dataclasses.dataclass(frozen=True)
class Event:
    """One span name or span event of the contract: where it appears, what it carries, who reads it."""

    name: str
    #: ``span`` or ``span event`` (or ``span event, log``: also a log record with this event name).
    kind: str
    attributes: tuple[str, ...]
    emitted_by: str
    read_by: str


_TRACES = "trace viewers"
#: Every span name and event the agent emits, in the contract table (docs/telemetry-contract.md).
EVENTS: Final = (
    Event(
        EVENT_SCALING_DECISION,
        "span event, log",
        (
            ATTR_SCALER_NAME,
            ATTR_SCALER_ACTION,
            ATTR_SCALER_LIMITED_BY,
            ATTR_SCALER_METRIC,
            ATTR_SCALER_CURRENT,
            ATTR_SCALER_TARGET,
            ATTR_SCALER_REASON,
        ),
        "AutoScaler",
        _TRACES + ", logs",
    ),
    Event(
        EVENT_RETRY,
        "span event",
        (ATTR_RETRY_POLICY, ATTR_RETRY_ATTEMPT, ATTR_RETRY_DELAY, ATTR_ERROR_TYPE),
        "RetryPolicy",
        _TRACES,
    ),
    Event(
        EVENT_RETRY_GIVE_UP,
        "span event",
        (ATTR_RETRY_POLICY, ATTR_RETRY_STOP, ATTR_ERROR_TYPE),
        "RetryPolicy",
        _TRACES,
    ),
    Event(
        EVENT_BREAKER_TRANSITION,
        "span event",
        (ATTR_BREAKER_NAME, ATTR_BREAKER_FROM, ATTR_BREAKER_TO),
        "CircuitBreaker",
        _TRACES,
    ),
    Event(
        EVENT_BREAKER_REJECTED,
        "span event",
        (ATTR_BREAKER_NAME, ATTR_BREAKER_STATE),
        "CircuitBreaker",
        _TRACES,
    ),
    Event(
        EVENT_FALLBACK, "span event", (ATTR_FALLBACK_NAME, ATTR_ERROR_TYPE), "GracefulDegradation", _TRACES
    ),
    Event(EVENT_TIMEOUT, "span event", (ATTR_TIMEOUT_NAME,), "timeout", _TRACES),
    Event(
        EVENT_RATE_LIMITED,
        "span event",
        (ATTR_RATE_LIMITER_NAME, ATTR_RATE_LIMITER_RETRY_AFTER),
        "RateLimiter",
        _TRACES,
    ),
    Event(
        EVENT_RESOURCE_LIMIT,
        "span event",
        (ATTR_RESOURCE_KIND, ATTR_RESOURCE_VALUE, ATTR_RESOURCE_THRESHOLD),
        "ResourceMonitor",
        _TRACES,
    ),
    Event(
        SPAN_PROFILE,
        "span",
        (
            ATTR_PROFILER_KIND,
            ATTR_PROFILER_FUNCTION,
            ATTR_CODE_FUNCTION_NAME,
            ATTR_CODE_FILE_PATH,
            ATTR_CODE_LINE_NUMBER,
            ATTR_PROFILER_DURATION,
            ATTR_PROFILER_PROFILED,
            ATTR_PROFILER_CPU_TIME,
            ATTR_PROFILER_SAMPLE_COUNT,
            ATTR_PROFILER_PEAK_MEMORY,
            ATTR_PROFILER_TOTAL_ALLOCATIONS,
            ATTR_PROFILER_TOTAL_BYTES,
            ATTR_PROFILER_ARTIFACT,
        ),
        "PerformanceProfiler",
        _TRACES,
    ),
    Event(
        SPAN_PROFILE_FRAME,
        "span",
        (
            ATTR_CODE_FUNCTION_NAME,
            ATTR_CODE_FILE_PATH,
            ATTR_CODE_LINE_NUMBER,
            ATTR_PROFILER_SELF_TIME,
            ATTR_PROFILER_TOTAL_TIME,
            ATTR_PROFILER_FRAME_DEPTH,
        ),
        "PerformanceProfiler",
        _TRACES,
    ),
    Event(
        EVENT_PROFILE_FUNCTION,
        "span event",
        (
            ATTR_CODE_FUNCTION_NAME,
            ATTR_CODE_FILE_PATH,
            ATTR_CODE_LINE_NUMBER,
            ATTR_PROFILER_SELF_TIME,
            ATTR_PROFILER_TOTAL_TIME,
            ATTR_PROFILER_SITE_BYTES,
            ATTR_PROFILER_SITE_ALLOCATIONS,
        ),
        "PerformanceProfiler",
        _TRACES,
    ),
    Event(EVENT_WORKER_EJECTED, "span event", (ATTR_LB_NAME, ATTR_LB_WORKER), "LoadBalancer", _TRACES),
    Event(
        EVENT_DB_N_PLUS_ONE,
        "span event",
        (
            ATTR_DB_QUERY_TEXT,
            ATTR_DB_SYSTEM_NAME,
            ATTR_N_PLUS_ONE_CALLS,
            ATTR_CODE_FUNCTION_NAME,
            ATTR_CODE_FILE_PATH,
            ATTR_CODE_LINE_NUMBER,
            ATTR_CODE_STACKTRACE,
        ),
        "the agent's N+1 watch (runtime.n_plus_one)",
        _TRACES + ", amqadf-analyze",
    ),
    Event(
        EVENT_EXCEPTION,
        "span event",
        ("exception.type", "exception.message", "exception.stacktrace"),
        "every span that records an error (OpenTelemetry convention)",
        _TRACES,
    ),
)

#: Resource attributes every export carries.
RESOURCE_ATTRIBUTES: Final = (
    ATTR_SERVICE_NAME,
    ATTR_SERVICE_VERSION,
    ATTR_SERVICE_INSTANCE_ID,
    ATTR_DEPLOYMENT_ENVIRONMENT_NAME,
    ATTR_HOST_NAME,
    ATTR_HOST_ARCH,
    ATTR_OS_TYPE,
    ATTR_PROCESS_PID,
    ATTR_PROCESS_EXECUTABLE_NAME,
    ATTR_PROCESS_RUNTIME_NAME,
    ATTR_PROCESS_RUNTIME_VERSION,
    ATTR_TELEMETRY_DISTRO_NAME,
    ATTR_TELEMETRY_DISTRO_VERSION,
)

_TABLE_HEADER = "| name | kind | unit | attributes | emitted by | read by |\n|---|---|---|---|---|---|\n"


def contract_table() -> str:
    """The contract as the Markdown table docs/telemetry-contract.md carries."""
    rows = []
    for inst in INSTRUMENTS:
        name = f"`{inst.name}`" + (" (semconv)" if inst.standard else "")
        attrs = ", ".join(f"`{a}`" for a in inst.attributes) or "—"
        rows.append(
            f"| {name} | {inst.kind} | `{inst.unit}` | {attrs} | {inst.emitted_by} | {inst.read_by} |\n"
        )
    for event in EVENTS:
        attrs = ", ".join(f"`{a}`" for a in event.attributes) or "—"
        rows.append(
            f"| `{event.name}` | {event.kind} | — | {attrs} | {event.emitted_by} | {event.read_by} |\n"
        )
    return _TABLE_HEADER + "".join(rows)


def instrument(name: str) -> Instrument:
    """The contract entry for ``name``; ``KeyError`` names it when it is not in the contract."""
    for inst in INSTRUMENTS:
        if inst.name == name:
            return inst
    raise KeyError(f"{name!r} is not an instrument of the telemetry contract")


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    print(contract_table(), end="")

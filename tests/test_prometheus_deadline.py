"""A Prometheus source that answers, but too slowly: each query has a deadline, not only each read.

The server trickles its answer a byte at a time, each byte well within the per-read ``timeout``:
without a deadline for the whole query, the run would wait as long as the server keeps sending.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from amqadf_agent.analyzer.prometheus_source import read_prometheus
from amqadf_agent.errors import TelemetryInputError

#: How long the trickling server keeps going at most: a query the deadline does not end fails the
#: test with another message instead of hanging it.
SERVER_GIVES_UP_S = 30.0
BODY = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'


def _answers(mode: str) -> tuple[bytes, bytes]:
    """What the server sends at once, and what it then trickles a byte at a time."""
    if mode == "headers":
        return b"", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: y\r\n" * 10_000
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if mode == "body-with-length":
        return head + b"Content-Length: %d\r\n\r\n" % (len(BODY) * 10_000), BODY * 10_000
    return head + b"Connection: close\r\n\r\n", BODY[:-2] + b" " * 1_000_000  # read until close


@contextlib.contextmanager
def trickling_server(mode: str, hung_up: threading.Event) -> Iterator[str]:
    """Trickles its answer until ``SERVER_GIVES_UP_S``, or until the client shuts the connection
    (then ``hung_up`` is set)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        at_once, trickle = _answers(mode)
        ends = time.monotonic() + SERVER_GIVES_UP_S
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(at_once)
                for i in range(len(trickle)):
                    if stop.is_set() or time.monotonic() > ends:
                        return
                    conn.sendall(trickle[i : i + 1])
                    time.sleep(0.05)
            except OSError:  # the client shut the connection: what the deadline does
                hung_up.set()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://user:s3cret@127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("mode", ["headers", "body-with-length", "body-until-close"])
def test_a_query_answered_a_byte_at_a_time_ends_at_its_deadline_with_one_line(mode: str) -> None:
    hung_up = threading.Event()
    with trickling_server(mode, hung_up) as url:
        records = read_prometheus(url, start=1_700_000_000, end=1_700_000_600, timeout=5.0, deadline=1.0)
        with pytest.raises(TelemetryInputError) as raised:
            list(records)
        # the query was ended by the client's deadline, not by the server giving up
        assert hung_up.wait(SERVER_GIVES_UP_S / 2)
    message = str(raised.value)
    assert message == (
        "Prometheus at http://user:[secure]@127.0.0.1:"
        f"{url.rsplit(':', 1)[1]} did not answer a query in full within 1 s: "
        "ask for less (a larger step, a shorter time range, one service) or check the server"
    )
    assert "\n" not in message and "s3cret" not in message


@pytest.mark.parametrize("deadline", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_deadline_is_refused_at_once(deadline: float) -> None:
    with pytest.raises(TelemetryInputError, match="bad query deadline"):
        read_prometheus("http://127.0.0.1:9", start=1_700_000_000, end=1_700_000_600, deadline=deadline)

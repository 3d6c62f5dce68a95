"""A real ``redis-server`` for tests, on a free loopback port, without persistence.

    def test_x(redis_server: RedisServer) -> None:   # the fixture of tests/conftest.py
        store = RedisStore(redis_server.url)
        redis_server.kill()      # mid-test: SIGKILL, the port stops answering
        redis_server.start()     # again on the same port (empty: nothing is persisted)

Tests using the fixture fail, naming the package, when ``redis-server`` is not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

from support import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _ping(port: int, timeout: float = 0.1) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; ``start``/``kill``/``stop`` at will."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait: float = 5.0) -> None:
        """Start the server and return once it answers PING (fails the test after ``wait`` s)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            if _ping(self.port):
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port} within {wait} s")

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone (no clean shutdown, like a crash)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def stop(self) -> None:
        self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

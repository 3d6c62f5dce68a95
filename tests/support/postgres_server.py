"""A real PostgreSQL server for tests, on a free loopback port, in a throw-away data directory.

    def test_x(postgres_server: PostgresServer) -> None:   # the session fixture of tests/conftest.py
        dsn = postgres_server.dsn                           # postgresql://postgres@127.0.0.1:PORT/postgres
        dsn = postgres_server.create_database("shop")       # a fresh database of its own

One cluster serves the whole test session (``initdb`` takes seconds); tests that need isolation ask
for a database of their own. The server runs as the ``postgres`` user when the tests run as root
(PostgreSQL refuses to run as root), trusts connections on loopback only, and keeps no state after
the session. The ``hypopg`` extension is there when Debian's ``postgresql-15-hypopg`` is installed
(``.ci/install-deps`` installs it). Tests using the fixture fail, naming the package, when the
server binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

from support import free_port

#: The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin).
_BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
POSTGRES_BIN = _BIN_DIRS[-1] if _BIN_DIRS else ""


def _as_postgres_user() -> tuple[Callable[[], None] | None, int, int]:
    """The ``preexec_fn`` that drops root to the ``postgres`` user, and that user's uid/gid."""
    if os.geteuid() != 0:
        return None, os.geteuid(), os.getegid()
    user = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return drop, user.pw_uid, user.pw_gid


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class PostgresServer:
    """One ``postgres`` process on ``127.0.0.1:port`` with a fresh cluster; ``start``/``stop``."""

    def __init__(self) -> None:
        if not POSTGRES_BIN:
            raise RuntimeError(
                "PostgreSQL server is not installed: apt-get install -y postgresql postgresql-15-hypopg"
            )
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="amqadf-pg-")
        self.data = os.path.join(self.root, "data")
        #: The server's own log (what it printed), for a test that fails to read.
        self.log = os.path.join(self.root, "postgres.log")
        self.process: subprocess.Popen[bytes] | None = None
        self._drop, uid, gid = _as_postgres_user()
        os.chown(self.root, uid, gid)
        os.chmod(self.root, 0o700)
        self._run(
            [f"{POSTGRES_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-sync", "--locale=C"]
        )  # fmt: skip

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, preexec_fn=self._drop, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-500:]}")

    @property
    def dsn(self) -> str:
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, wait: float = 20.0) -> None:
        """Start the server and return once it accepts connections (fails after ``wait`` s)."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [
                f"{POSTGRES_BIN}/postgres", "-D", self.data,
                "-p", str(self.port), "-h", "127.0.0.1", "-k", self.root,
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=50", "-c", "shared_buffers=32MB",
            ],
            preexec_fn=self._drop,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - the child holds it; a pipe would fill and block
        )  # fmt: skip
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with open(self.log, errors="replace") as log:
                    error = log.read()
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {error.strip()[-500:]}")
            if _answers(self.port) and self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections on port {self.port} within {wait} s")

    def _ready(self) -> bool:
        ready = subprocess.run(
            [f"{POSTGRES_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            capture_output=True,
            check=False,
        )
        return ready.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with ``psql`` (no Python driver needed) and return its unaligned output."""
        done = subprocess.run(
            [f"{POSTGRES_BIN}/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn_of(database),
             "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A fresh, empty database ``name`` (dropped first if it exists); its DSN."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn_of(name)

    @property
    def has_hypopg(self) -> bool:
        return os.path.exists(os.path.join(self._sharedir(), "extension", "hypopg.control"))

    def _sharedir(self) -> str:
        done = subprocess.run([f"{POSTGRES_BIN}/pg_config", "--sharedir"], capture_output=True, text=True)
        return done.stdout.strip() or "/usr/share/postgresql"

    def stop(self) -> None:
        """Stop the server (SIGINT: fast shutdown) and remove its data directory."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(2)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

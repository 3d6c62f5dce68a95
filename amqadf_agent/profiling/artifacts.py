"""Full profiles saved as files (``artifacts_dir``): their names, an atomic write, and pruning.

A name starts with ``ARTIFACT_PREFIX`` and the time in nanoseconds, so names sort oldest first and
pruning removes only files this package wrote; the pid and a per-profiler sequence number keep
names unique across processes sharing a directory. Errors are raised to the profiler, which
counts and logs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

__all__ = ["ARTIFACT_PREFIX", "SUFFIXES", "artifact_name", "prune", "write"]

#: Every artifact file starts with this (only these are ever removed).
ARTIFACT_PREFIX = "amqadf-profile-"
#: The file suffix of each artifact format.
SUFFIXES = {"speedscope": ".speedscope.json", "html": ".html"}


def artifact_name(kind: str, function: str, seq: int, artifact_format: str) -> str:
    """The file name of one profile of ``function`` (``kind``: cpu or memory)."""
    function = re.sub(r"[^A-Za-z0-9_.-]+", "_", function)[-80:]
    # time first: names sort oldest first; pid and sequence: unique across processes.
    return (
        f"{ARTIFACT_PREFIX}{time.time_ns():020d}-{os.getpid()}-{seq:06d}-{kind}-{function}"
        f"{SUFFIXES[artifact_format]}"
    )


def write(directory: str, name: str, content: str) -> str:
    """Write ``content`` as ``directory/name`` (the directory is created if missing); its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as file:
        file.write(content)
    os.replace(partial, path)  # a reader never sees a half-written profile
    return path


def prune(directory: str, keep: int) -> None:
    """Remove the oldest artifact files of ``directory`` beyond the newest ``keep``."""
    names = sorted(
        entry.name
        for entry in os.scandir(directory)
        if entry.name.startswith(ARTIFACT_PREFIX) and not entry.name.endswith(".partial")
    )
    for name in names[: max(len(names) - keep, 0)]:
        with contextlib.suppress(FileNotFoundError):  # another process pruned it first
            os.remove(os.path.join(directory, name))

"""``amqadf-agent run [--exporter NAME ...] -- python app.py``: zero-code start of an application.

It does what ``opentelemetry-instrument`` does (puts OpenTelemetry's ``sitecustomize`` first on
``PYTHONPATH`` and execs the command), with ``OTEL_PYTHON_DISTRO`` and ``OTEL_PYTHON_CONFIGURATOR``
set to ours so that another installed distro cannot win.
"""

from __future__ import annotations

import argparse
import os
import shutil
from typing import Any

from amqadf_agent.errors import AmqadfError, ConfigError
from amqadf_agent.runtime.settings import EXPORTERS


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run a Python application with the agent and every installed instrumentation",
        description="Run COMMAND with the agent started before the application's first line.",
    )
    parser.add_argument(
        "--exporter",
        action="append",
        choices=EXPORTERS,
        help="where telemetry goes (repeat for several; default: AMQADF_EXPORTERS or file)",
    )
    parser.add_argument("--out", metavar="DIR", help="directory of the file exporter (default ./telemetry)")
    parser.add_argument("--service-name", metavar="NAME", help="service.name (default OTEL_SERVICE_NAME)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    parser.set_defaults(execute=execute)


def prepare_environment(args: argparse.Namespace, environ: dict[str, str]) -> list[str]:
    """The environment and argv to exec; separate from ``execute`` so tests can check it."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("command", "nothing to run: amqadf-agent run -- python app.py")
    import opentelemetry.instrumentation.auto_instrumentation as auto

    environ["OTEL_PYTHON_DISTRO"] = "amqadf"
    environ["OTEL_PYTHON_CONFIGURATOR"] = "amqadf"
    if args.exporter:
        environ["AMQADF_EXPORTERS"] = ",".join(args.exporter)
    if args.out:
        environ["AMQADF_OUTPUT_DIR"] = args.out
    if args.service_name:
        environ["OTEL_SERVICE_NAME"] = args.service_name
    sitecustomize_dir = os.path.dirname(os.path.abspath(auto.__file__))
    paths = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != sitecustomize_dir]
    if os.getcwd() not in paths:
        paths.insert(0, os.getcwd())
    environ["PYTHONPATH"] = os.pathsep.join([sitecustomize_dir, *paths])
    executable = shutil.which(command[0], path=environ.get("PATH"))
    if executable is None:
        raise AmqadfError(f"{command[0]}: command not found")
    return [executable, *command[1:]]


def execute(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    argv = prepare_environment(args, environ)
    os.execve(argv[0], argv, environ)
    return 0  # pragma: no cover - execve does not return

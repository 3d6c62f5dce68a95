"""``amqadf-agent config show [FILE]`` and ``amqadf-agent config check FILE``.

``show`` prints the effective configuration, secrets as ``[secure]``, each value with the layer it
came from. ``check`` prints every problem and exits 1 when there is one; a file that cannot be read
or parsed is one such problem (file, line and column), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from amqadf_agent.config.schema import ENVIRONMENTS
from amqadf_agent.errors import ConfigFileError


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "config",
        help="show or check the agent's configuration",
        description="Show the effective configuration, or check a configuration file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the effective configuration (secrets redacted)")
    show.add_argument("file", nargs="?", help="a .yaml/.yml, .json or .toml file (optional)")
    show.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default text)"
    )
    check = actions.add_parser("check", help="print every problem of a configuration; exit 1 if any")
    check.add_argument("file", help="a .yaml/.yml, .json or .toml file")
    for sub in (show, check):
        sub.add_argument("--environment", choices=ENVIRONMENTS, help="the environment profile to apply")
        sub.add_argument("--no-env", action="store_true", help="ignore AMQADF_*/OTEL_* environment variables")
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    if args.action == "show":
        return show(args.file, args.environment, not args.no_env, args.format, sys.stdout, sys.stderr)
    return check(args.file, args.environment, not args.no_env, sys.stdout, sys.stderr)


def _load(file: str | None, environment: str | None, use_env: bool) -> Any:
    from amqadf_agent.config.production import ProductionConfig

    if use_env:
        return ProductionConfig.load(file, environment)
    return ProductionConfig(file=file, environment=environment, use_environment=False)


def show(file: str | None, environment: str | None, use_env: bool, fmt: str, out: TextIO, err: TextIO) -> int:
    """Print the effective configuration with the layer of each value; 1 if the file cannot be read."""
    try:
        config = _load(file, environment, use_env)
    except ConfigFileError as exc:
        print(f"amqadf-agent config: {exc}", file=err)
        return 1
    values = config.to_dict()
    if fmt == "json":
        json.dump({"values": values, "sources": config.sources}, out, indent=2, sort_keys=False)
        out.write("\n")
    else:
        rows = [(path, _lookup(values, path), source) for path, source in config.sources.items()]
        width = max(len(path) for path, _, _ in rows)
        print(f"# environment: {config.environment}; secrets are shown as [secure]", file=out)
        for path, value, source in rows:
            print(f"{path:<{width}} = {json.dumps(value)}  # {source}", file=out)
    valid, errors = config.validate()
    if not valid:
        print(f"amqadf-agent config: {len(errors)} problem(s); run 'amqadf-agent config check'", file=err)
    return 0


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    current: Any = values
    for part in dotted.split("."):
        current = current[part]
    return current


def check(file: str, environment: str | None, use_env: bool, out: TextIO, err: TextIO) -> int:
    """Print every problem of the configuration; 0 when there is none, 1 otherwise."""
    try:
        config = _load(file, environment, use_env)
    except ConfigFileError as exc:
        print(f"{exc}", file=out)
        print(f"amqadf-agent config: {file}: 1 problem", file=err)
        return 1
    valid, errors = config.validate()
    for error in errors:
        print(f"{file}: {error}", file=out)
    if not valid:
        print(f"amqadf-agent config: {file}: {len(errors)} problem(s)", file=err)
        return 1
    print(f"{file}: OK (environment {config.environment})", file=out)
    return 0

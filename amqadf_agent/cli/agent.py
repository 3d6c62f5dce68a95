"""``amqadf-agent``: run an application under the agent, or run the built-in demo service.

One module per subcommand (``run``, ``demo``); each exposes ``add_parser`` and ``execute``. The
package's errors become one line on stderr and their exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

PROG = "amqadf-agent"


def _parser() -> argparse.ArgumentParser:
    from amqadf_agent.cli import config, demo, run

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="An OpenTelemetry-native production agent for Python services.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run.add_parser(commands)
    demo.add_parser(commands)
    config.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from amqadf_agent.errors import AmqadfError

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.execute(args))
    except AmqadfError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

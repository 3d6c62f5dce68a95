"""Cost of ``sanitize_message`` (exception events, span statuses, captured log lines). Prints a table.

    .venv/bin/python tests/bench/bench_sanitize_message.py [--repeat 5]

It runs in the application's ``span.end()`` for every span with an exception event, so its time
must grow linearly with the text: the hostile rows (one keyword or opener repeated over a 16 KiB
line, none closed) must cost about 16 times their 1 KiB row, not 256 times. Each figure is µs
per call, the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import timeit

from amqadf_agent.runtime.sanitize import sanitize_message

ROWS = {
    "plain message (no trigger)": lambda n: ("connection reset by peer " * n)[:n],
    "psycopg unique violation": lambda n: (
        (
            'duplicate key value violates unique constraint "users_email_key"\n'
            "DETAIL:  Key (email)=(ann@example.com) already exists.\n"
        )
        * max(1, n // 110)
    ),
    "SELECT repeated, no FROM": lambda n: ("SELECT " * n)[:n],
    "UPDATE repeated, no SET": lambda n: ("UPDATE x " * n)[:n],
    "a=( repeated, no )": lambda n: ("a=(" * n)[:n],
    "[SQL: repeated, no ]": lambda n: ("[SQL: " * n)[:n],
    "one long word, then a=(": lambda n: "a" * n + " k=(",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| text | 1 KiB µs | 16 KiB µs | ratio |")
    print("|---|---|---|---|")
    for name, make in ROWS.items():
        small, large = make(1024), make(16384)
        times = []
        for text in (small, large):
            number = 20 if len(text) > 10_000 else 500
            runs = timeit.repeat(lambda t=text: sanitize_message(t), number=number, repeat=args.repeat)
            times.append(min(runs) / number * 1e6)
        print(f"| {name} | {times[0]:.1f} | {times[1]:.1f} | {times[1] / times[0]:.0f} |")


if __name__ == "__main__":
    main()

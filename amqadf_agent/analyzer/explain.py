"""The planner's verdict on each index candidate: ``amqadf-analyze --explain DSN``.

An index candidate (``rules.database``) is a guess from a statement's text. This module asks the
database the statement runs on whether the planner would use the index and what it would save, and
gives each candidate one verdict:

* ``verified``: the planner uses the index and the estimated cost falls by at least
  ``MIN_COST_DROP`` (50%, Dexter's rule: ankane/dexter suggests an index only then), and no existing
  index already covers its leading columns; the finding carries the exact ``CREATE INDEX``;
* ``not suggested``: the planner would not use it, the cost falls too little, or an existing index
  already covers its leading columns;
* ``unverified``: no DSN was given, or it could not be asked (cannot connect, no hypopg, a statement
  that cannot be planned), with the one-line reason.

Nothing is ever written to the target:

* PostgreSQL (``postgresql://`` or ``postgres://``; psycopg, the ``postgres`` extra, imported lazily):
  the session is read-only (``default_transaction_read_only``); the index is a hypothetical one from
  hypopg (``hypopg_create_index``, session-local memory). Statements arrive normalized with ``?`` for
  every value, so they are planned generically: ``PREPARE`` with ``$n`` parameters and ``EXPLAIN
  EXECUTE`` with NULLs under ``plan_cache_mode = force_generic_plan`` (PostgreSQL 15 has no
  ``EXPLAIN (GENERIC_PLAN)``). The cost is the plan's ``Total Cost``.
* SQLite (a file path or ``sqlite:///path``): the file is opened read-only (``mode=ro``); its schema is
  copied into an in-memory database, where the candidate is created. SQLite's ``EXPLAIN QUERY PLAN``
  gives no cost, so the cost is the estimated rows visited: the table's row count for a scan, and
  ``log2(rows) + rows / distinct keys`` for a search by the index; those counts are read from the
  file and given to the in-memory copy's planner as ``sqlite_stat1`` rows.

The DSN's password never appears in a reason (``redaction.redact_url``, and scrubbed from driver
messages).
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote, unquote, urlsplit

from amqadf_agent.analyzer.recommendation import Evidence, Recommendation
from amqadf_agent.redaction import redact_url

__all__ = ["MIN_COST_DROP", "Candidate", "Verdict", "apply_verdicts", "explain_candidates"]

#: The share by which the planner's cost must fall for an index to be suggested: Dexter's rule
#: (ankane/dexter, "the index must reduce the cost by at least 50%").
MIN_COST_DROP: Final = 0.5
#: What an index candidate is labelled with when no DSN was given.
NO_DSN_REASON: Final = "not checked with the planner: run with --explain DSN (a replica or a copy)"
#: A plan may take this long on the target before it is given up (PostgreSQL ``statement_timeout``).
STATEMENT_TIMEOUT_MS: Final = 10_000
#: The name of the candidate index in the in-memory SQLite copy.
_SQLITE_INDEX = "amqadf_candidate"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")

Outcome = Literal["verified", "not suggested", "unverified"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An index to check: the statement (normalized, ``?`` for values) and the table and columns."""

    statement: str
    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the planner said of one candidate."""

    candidate: Candidate
    verdict: Outcome
    #: One line: why this verdict.
    reason: str
    cost_before: float | None = None
    cost_after: float | None = None
    #: ``"planner cost"`` (PostgreSQL) or ``"rows visited"`` (SQLite's estimate).
    cost_unit: str = ""
    plan_before: str = ""
    plan_after: str = ""
    #: The statement to run for a verified index.
    create_index: str = ""

    @property
    def cost_ratio(self) -> float | None:
        """Cost after / cost before (``None`` when either is unknown)."""
        if self.cost_before is None or self.cost_after is None or self.cost_before <= 0:
            return None
        return self.cost_after / self.cost_before

    def numbers(self) -> dict[str, int | float | str]:
        """The verdict as evidence numbers of the finding."""
        out: dict[str, int | float | str] = {"verdict": self.verdict, "verdict_reason": self.reason}
        if self.cost_before is not None and self.cost_after is not None:
            out["cost_before"] = round(self.cost_before, 3)
            out["cost_after"] = round(self.cost_after, 3)
            out["cost_unit"] = self.cost_unit
            ratio = self.cost_ratio
            if ratio is not None:
                out["cost_drop_pct"] = round((1 - ratio) * 100, 1)
        if self.plan_before:
            out["plan_before"] = self.plan_before
        if self.plan_after:
            out["plan_after"] = self.plan_after
        if self.create_index:
            out["create_index"] = self.create_index
        return out


class _Unverified(Exception):
    """One candidate (or the whole target) cannot be checked; the message is the one-line reason."""


def explain_candidates(candidates: Sequence[Candidate], dsn: str | None) -> list[Verdict]:
    """A verdict for each candidate, in order; never raises for a bad DSN or statement."""
    if not candidates:
        return []
    if dsn is None:
        return [Verdict(c, "unverified", NO_DSN_REASON) for c in candidates]
    try:
        target: _Target = _open(dsn)
    except _Unverified as error:
        return [Verdict(c, "unverified", str(error)) for c in candidates]
    try:
        verdicts = []
        for candidate in candidates:
            try:
                verdicts.append(target.verdict(candidate))
            except _Unverified as error:
                verdicts.append(Verdict(candidate, "unverified", str(error)))
        return verdicts
    finally:
        target.close()


def apply_verdicts(
    recommendations: Iterable[Recommendation], dsn: str | None
) -> tuple[list[Recommendation], list[Verdict]]:
    """``recommendations`` with each index candidate labelled by its verdict (title, action, severity
    and ``evidence.numbers``), and the verdicts themselves."""
    found = list(recommendations)
    positions = [i for i, r in enumerate(found) if r.rule == "index_candidate"]
    candidates = [candidate_of(found[i]) for i in positions]
    verdicts = explain_candidates(candidates, dsn)
    for i, verdict in zip(positions, verdicts, strict=True):
        found[i] = labelled(found[i], verdict)
    return found, verdicts


def candidate_of(recommendation: Recommendation) -> Candidate:
    """The candidate an ``index_candidate`` finding names."""
    numbers = recommendation.evidence.numbers
    columns = tuple(c.strip() for c in str(numbers.get("columns", "")).split(",") if c.strip())
    return Candidate(recommendation.subject, str(numbers.get("table", "")), columns)


def labelled(recommendation: Recommendation, verdict: Verdict) -> Recommendation:
    """``recommendation`` as its verdict makes it (the fingerprint stays: the subject is unchanged)."""
    candidate = verdict.candidate
    target = f"{candidate.table} ({', '.join(candidate.columns)})"
    evidence: Evidence = replace(
        recommendation.evidence, numbers={**recommendation.evidence.numbers, **verdict.numbers()}
    )
    if verdict.verdict == "verified":
        drop = verdict.numbers().get("cost_drop_pct", 0)
        return replace(
            recommendation,
            severity="medium",
            title=f"Index on {target}: verified by the planner (cost -{drop}%)",
            action=f"{verdict.create_index} ({verdict.plan_before} becomes {verdict.plan_after}).",
            evidence=evidence,
            confidence=max(recommendation.confidence, 0.8),
        )
    if verdict.verdict == "not suggested":
        return replace(
            recommendation,
            severity="info",
            title=f"Index candidate on {target}: not suggested by the planner",
            action=f"Do not add this index: {verdict.reason}.",
            evidence=evidence,
        )
    return replace(
        recommendation,
        title=f"Index candidate on {target} (unverified)",
        evidence=evidence,
    )


class _Target(Protocol):
    """A database the planner is asked on: PostgreSQL with hypopg, or a SQLite schema copy."""

    def verdict(self, candidate: Candidate) -> Verdict: ...

    def close(self) -> None: ...


def _open(dsn: str) -> _Target:
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme in ("postgresql", "postgres"):
        return _Postgres(dsn)
    if scheme in ("sqlite", ""):
        return _Sqlite(_sqlite_path(dsn))
    raise _Unverified(
        f"cannot use --explain {redact_url(dsn)}: give a postgresql:// URL or a SQLite file path"
    )


def _sqlite_path(dsn: str) -> str:
    if dsn.startswith("sqlite:"):
        path = unquote(urlsplit(dsn).path)
        return path[1:] if path.startswith("//") else path
    return dsn


def _verdict(
    candidate: Candidate,
    before: float,
    after: float,
    plan_before: str,
    plan_after: str,
    uses: bool,
    unit: str,
    create_index: str,
) -> Verdict:
    """Dexter's rule on the two costs."""
    drop = 1 - after / before if before > 0 else 0.0
    if not uses:
        outcome: Outcome = "not suggested"
        reason = "the planner would not use it"
    elif drop < MIN_COST_DROP:
        outcome, reason = "not suggested", f"the {unit} falls only {drop * 100:.1f}% (< {MIN_COST_DROP:.0%})"
    else:
        outcome, reason = "verified", f"the {unit} falls {drop * 100:.1f}% (>= {MIN_COST_DROP:.0%})"
    return Verdict(
        candidate,
        outcome,
        reason,
        cost_before=before,
        cost_after=after,
        cost_unit=unit,
        plan_before=plan_before,
        plan_after=plan_after,
        create_index=create_index if outcome == "verified" else "",
    )


def _check_names(candidate: Candidate) -> tuple[list[str], list[str]]:
    """The table (maybe schema-qualified) and column names, checked to be plain identifiers."""
    table = candidate.table.split(".")
    names = [*table, *candidate.columns]
    if not candidate.columns or not all(_IDENTIFIER.fullmatch(n) for n in names):
        raise _Unverified(f"cannot check {candidate.table} ({', '.join(candidate.columns)}): odd names")
    return table, list(candidate.columns)


def _quoted(names: Iterable[str]) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def _covering(existing: Iterable[tuple[str, Sequence[str]]], columns: Sequence[str]) -> str | None:
    """The name of an existing index whose leading columns are ``columns``, if any."""
    for name, indexed in existing:
        if [c.lower() for c in indexed[: len(columns)]] == list(columns):
            return name
    return None


def _one_line(error: BaseException, secret: str | None = None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if secret:
        text = text.replace(secret, "[secure]")
    return text[:200]


class _Postgres(_Target):
    UNIT = "planner cost"

    def __init__(self, dsn: str) -> None:
        self.shown = redact_url(dsn)
        self.password = urlsplit(dsn).password
        try:
            import psycopg
        except ImportError:
            raise _Unverified(
                "cannot check with PostgreSQL: psycopg is not installed "
                "(pip install 'amqadf-agent[postgres]')"
            ) from None
        options = f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        try:
            self.conn = psycopg.connect(dsn, autocommit=True, options=options, connect_timeout=10)
        except Exception as error:
            raise _Unverified(f"cannot connect to {self.shown}: {_one_line(error, self.password)}") from None
        try:
            self.conn.execute("SET plan_cache_mode = force_generic_plan")
            row = self.conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'").fetchone()
        except Exception as error:
            self.close()
            raise _Unverified(f"cannot query {self.shown}: {_one_line(error, self.password)}") from None
        self.hypopg = row is not None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection: nothing left to do
            self.conn.close()

    def _run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (none for a command); any error as an ``_Unverified`` of one line."""
        try:
            cursor = self.conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description is not None else []
        except Exception as error:
            raise _Unverified(_one_line(error, self.password)) from None

    def verdict(self, candidate: Candidate) -> Verdict:
        table, columns = _check_names(candidate)
        qualified = _quoted(table)
        try:
            existing = self._run(
                "SELECT c.relname, array(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY "
                "k(attnum, n) JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
                "ORDER BY k.n) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                "WHERE x.indrelid = to_regclass(%s)",
                (qualified,),
            )
            found = self._run("SELECT to_regclass(%s) IS NOT NULL", (qualified,))
        except _Unverified as error:
            raise _Unverified(f"cannot read the indexes of {candidate.table}: {error}") from None
        if not found or not found[0][0]:
            raise _Unverified(f"table {candidate.table} not found in {self.shown}")
        covered = _covering(((str(n), list(c)) for n, c in existing), columns)
        if covered:
            return Verdict(
                candidate,
                "not suggested",
                f"the existing index {covered} already covers ({', '.join(columns)})",
            )
        if not self.hypopg:
            raise _Unverified(
                f"hypopg is not installed in {self.shown} (CREATE EXTENSION hypopg; Debian package "
                "postgresql-15-hypopg)"
            )
        statement, count = _dollar_parameters(candidate.statement)
        create = f"CREATE INDEX ON {qualified} ({', '.join(_quoted([c]) for c in columns)})"
        try:
            before, plan_before, _ = self._plan(statement, count, None)
            hypothetical = self._run("SELECT indexname FROM hypopg_create_index(%s)", (create,))
            name = str(hypothetical[0][0]) if hypothetical else ""
            after, plan_after, uses = self._plan(statement, count, name)
        except _Unverified as error:
            raise _Unverified(f"cannot plan {_short(candidate.statement)}: {error}") from None
        finally:
            self._reset()
        concurrently = create.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1) + ";"
        return _verdict(candidate, before, after, plan_before, plan_after, uses, self.UNIT, concurrently)

    def _plan(self, statement: str, count: int, index: str | None) -> tuple[float, str, bool]:
        """Total cost, a short plan and whether ``index`` is used, of the generic plan."""
        # Prepared anew each time: a cached generic plan would not see the hypothetical index.
        self._run(f"PREPARE amqadf_explain AS {statement}")
        try:
            nulls = ", ".join(["NULL"] * count)
            rows = self._run(f"EXPLAIN (FORMAT JSON) EXECUTE amqadf_explain{f'({nulls})' if count else ''}")
        finally:
            self._run("DEALLOCATE amqadf_explain")
        document = rows[0][0]
        if isinstance(document, str):
            import json

            document = json.loads(document)
        plan = document[0]["Plan"]
        nodes = list(_nodes(plan))
        scans = [_describe(node) for node in nodes if "Relation Name" in node or "Index Name" in node]
        uses = index is not None and any(node.get("Index Name") == index for node in nodes)
        return float(plan["Total Cost"]), "; ".join(scans) or str(plan.get("Node Type", "")), uses

    def _reset(self) -> None:
        try:
            if self.hypopg:
                self.conn.execute("SELECT hypopg_reset()")
            self.conn.execute("DEALLOCATE ALL")
        except Exception:  # the connection broke: the hypothetical index went with the session
            pass


def _nodes(plan: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _describe(node: dict[str, Any]) -> str:
    """``Seq Scan on orders`` or ``Index Scan using the hypothetical index on orders``."""
    kind, relation = str(node.get("Node Type", "")), str(node.get("Relation Name", ""))
    index = node.get("Index Name")
    if index:
        shown = "the hypothetical index" if str(index).startswith("<") else str(index)
        return f"{kind} using {shown}" + (f" on {relation}" if relation else "")
    return f"{kind} on {relation}"


def _dollar_parameters(statement: str) -> tuple[str, int]:
    """``?`` placeholders (normalized statements hold no literal, so no ``?`` in a string) as ``$n``."""
    count = 0

    def number(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", number, statement), count


def _short(statement: str) -> str:
    return statement if len(statement) <= 60 else statement[:57] + "..."


class _Sqlite(_Target):
    UNIT = "rows visited"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.source = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
            self.source.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as error:
            raise _Unverified(f"cannot open SQLite database {path}: {_one_line(error)}") from None

    def close(self) -> None:
        self.source.close()

    def verdict(self, candidate: Candidate) -> Verdict:
        table, columns = _check_names(candidate)
        if len(table) != 1:
            raise _Unverified(f"cannot check {candidate.table}: schema-qualified names are not supported")
        name = table[0]
        try:
            schema = self.source.execute(
                "SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "AND type IN ('table', 'index', 'view') ORDER BY type = 'index', rowid"
            ).fetchall()
            if not self.source.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND lower(name) = ?", (name,)
            ).fetchone():
                raise _Unverified(f"table {name} not found in {self.path}")
            existing = [
                (str(index), self._columns_of(str(index)))
                for _, index, *_ in self.source.execute(f"PRAGMA index_list({_quoted([name])})")
            ]
            rows = int(self.source.execute(f"SELECT count(*) FROM {_quoted([name])}").fetchone()[0])
            keys = int(
                self.source.execute(
                    f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(_quoted([c]) for c in columns)} "
                    f"FROM {_quoted([name])})"
                ).fetchone()[0]
            )
        except sqlite3.Error as error:
            raise _Unverified(f"cannot read {name} in {self.path}: {_one_line(error)}") from None
        covered = _covering(existing, columns)
        if covered:
            reason = f"the existing index {covered} already covers ({', '.join(columns)})"
            return Verdict(candidate, "not suggested", reason)
        copy = sqlite3.connect(":memory:")
        try:
            for _kind, sql in schema:
                copy.execute(sql)
            copy.execute("ANALYZE")  # creates sqlite_stat1, filled with what the file holds below
            copy.execute("DELETE FROM sqlite_stat1")
            copy.execute("INSERT INTO sqlite_stat1 VALUES (?, NULL, ?)", (name, str(max(rows, 1))))
            try:
                stats = self.source.execute("SELECT tbl, idx, stat FROM sqlite_stat1").fetchall()
            except sqlite3.Error:
                stats = []
            copy.executemany("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", [s for s in stats if s[1]])
            copy.execute("ANALYZE sqlite_schema")
            parameters = (None,) * candidate.statement.count("?")
            plan_before = self._plan(copy, candidate.statement, parameters)
            listed = ", ".join(_quoted([c]) for c in columns)
            copy.execute(f"CREATE INDEX {_SQLITE_INDEX} ON {_quoted([name])} ({listed})")
            per_key = max(rows // max(keys, 1), 1)
            stat = " ".join([str(max(rows, 1)), *[str(per_key)] * len(columns)])
            copy.execute("INSERT INTO sqlite_stat1 VALUES (?, ?, ?)", (name, _SQLITE_INDEX, stat))
            copy.execute("ANALYZE sqlite_schema")
            plan_after = self._plan(copy, candidate.statement, parameters)
        except sqlite3.Error as error:
            raise _Unverified(f"cannot plan {_short(candidate.statement)}: {_one_line(error)}") from None
        finally:
            copy.close()
        uses = any(f"INDEX {_SQLITE_INDEX}" in line for line in plan_after)
        scanned = any(re.fullmatch(rf"SCAN {re.escape(name)}( .*)?", line, re.I) for line in plan_before)
        before = float(rows if scanned else math.log2(rows + 1) + per_key)
        after = float(math.log2(rows + 1) + per_key) if uses else before
        shown_after = [line.replace(_SQLITE_INDEX, "the new index") for line in plan_after]
        real = f"CREATE INDEX IF NOT EXISTS {name}_{'_'.join(columns)}_idx ON {name} ({', '.join(columns)});"
        return _verdict(
            candidate, before, after, "; ".join(plan_before), "; ".join(shown_after), uses, self.UNIT, real
        )

    def _columns_of(self, index: str) -> list[str]:
        return [str(row[2]) for row in self.source.execute(f"PRAGMA index_info({_quoted([index])})")]

    @staticmethod
    def _plan(conn: sqlite3.Connection, statement: str, parameters: tuple[None, ...]) -> list[str]:
        return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]

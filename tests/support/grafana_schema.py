"""Check a dashboard's JSON against Grafana's dashboard schema, as ``grafana-foundation-sdk`` types it.

Grafana publishes no JSON Schema for the classic dashboard model, and no Python package validates
one: the schema is CUE (``kinds/dashboard``) and TypeScript in Grafana's repository. The nearest
thing on PyPI is Grafana's own ``grafana-foundation-sdk``, whose classes are generated from that
schema, the panel plugins' schemas (timeseries, stat, bargauge, state-timeline ...) and the data
source query schemas (prometheus ...). Its ``Dashboard.from_json`` only reads a dashboard (it
checks nothing: a wrong type or an unknown enum value passes through), so :func:`schema_problems`
checks the result itself:

1. ``Dashboard.from_json`` must read the JSON at all (an object where a list belongs raises);
2. every value read must have the type its field is declared with: integers, strings, booleans,
   the allowed values of each enumeration (``graphTooltip``, ``legend.displayMode``,
   ``custom.drawStyle``, ``thresholds.mode``, a query's ``format`` ...), nested objects recursively,
   and no query of an unknown data source type;
3. the model written back (``to_json``) must hold every key of the input with the same value: a
   key the schema does not know (misspelt, or put at the wrong level) is dropped there.

Problems of 2. name the SDK's attribute names (``dashboard.panels[1].grid_pos.h``), those of 3.
the JSON keys (``panels[1].gridpos``).

The SDK is released per Grafana version with a timestamp as version epoch, so an unpinned install
gets whichever line was published last (the 10.1 one): pin the line of the Grafana in use.
"""

from __future__ import annotations

import enum
import json
import re
import types
import typing
from typing import Any

#: Keys Grafana itself writes that its schema does not declare: a query variable's ``definition``
#: (the query as the variable editor shows it). Paths as :func:`_diff` names them, indices as ``[]``.
UNDECLARED_BUT_WRITTEN_BY_GRAFANA = frozenset({"templating.list[].definition"})


def schema_problems(dashboard: dict[str, Any]) -> list[str]:
    """What in ``dashboard`` does not fit Grafana's dashboard schema; empty when all of it does."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()  # the panel and query types; idempotent
    try:
        model = Dashboard.from_json(dashboard)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        return [f"not readable as a Grafana dashboard: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    _check(model, Dashboard, "dashboard", problems)
    written = json.loads(json.dumps(model, cls=JSONEncoder))
    _diff(dashboard, written, "", problems)
    return problems


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_model(value: Any) -> bool:
    return not isinstance(value, dict) and callable(getattr(value, "to_json", None))


def _check(value: Any, declared: Any, path: str, problems: list[str]) -> None:
    """Append to ``problems`` where ``value`` does not have the ``declared`` type."""
    origin = typing.get_origin(declared)
    if declared is Any or declared is object:
        if _is_model(value):  # e.g. a panel's options, declared ``object``: typed by the panel plugin
            _check(value, type(value), path, problems)
        return
    if origin in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(declared) if arm is not type(None)]
        if value is None and len(arms) < len(typing.get_args(declared)):
            return
        # a model object was read as one arm: report against that arm, not the nearest other one
        same = [arm for arm in arms if _is_model(value) and isinstance(arm, type) and isinstance(value, arm)]
        found: list[list[str]] = []
        for arm in same or arms:
            mine: list[str] = []
            _check(value, arm, path, mine)
            if not mine:
                return
            found.append(mine)
        problems.extend(min(found, key=len))  # the arm it came closest to
        return
    if origin is typing.Literal:
        if value not in typing.get_args(declared):
            problems.append(f"{path}: {value!r} is not one of {list(typing.get_args(declared))}")
        return
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: {type(value).__name__} where a list belongs")
            return
        (item,) = typing.get_args(declared) or (Any,)
        for index, element in enumerate(value):
            _check(element, item, f"{path}[{index}]", problems)
        return
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: {type(value).__name__} where an object belongs")
            return
        _, item = typing.get_args(declared) or (str, Any)
        for key, element in value.items():
            _check(element, item, f"{path}.{key}", problems)
        return
    if isinstance(declared, type) and issubclass(declared, enum.Enum):
        try:
            declared(value)
        except ValueError:
            problems.append(f"{path}: {value!r} is not one of {[m.value for m in declared]}")
        return
    if declared is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: {value!r} is not a boolean")
    elif declared is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: {value!r} is not an integer")
    elif declared is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: {value!r} is not a number")
    elif declared is str:
        if not isinstance(value, str):
            problems.append(f"{path}: {value!r} is not a string")
    elif isinstance(declared, type):
        if not isinstance(value, declared):
            problems.append(f"{path}: {type(value).__name__} where {declared.__name__} belongs")
        elif type(value).__name__ == "UnknownDataquery":
            problems.append(f"{path}: a query of no data source type the schema knows")
        elif _is_model(value):
            for name, field_type in _hints(type(value)).items():
                _check(getattr(value, name), field_type, f"{path}.{name}", problems)
    else:
        problems.append(f"{path}: cannot check a value declared {declared!r}")


def _diff(given: Any, written: Any, path: str, problems: list[str]) -> None:
    """Append where ``written`` lost a key of ``given`` or changed a value."""
    if isinstance(given, dict):
        if not isinstance(written, dict):
            problems.append(f"{path or '.'}: an object became {type(written).__name__} (not in the schema)")
            return
        for key, value in given.items():
            where = f"{path}.{key}" if path else key
            if key not in written:
                if re.sub(r"\[\d+\]", "[]", where) not in UNDECLARED_BUT_WRITTEN_BY_GRAFANA:
                    problems.append(f"{where}: not in Grafana's schema (dropped when read)")
            else:
                _diff(value, written[key], where, problems)
    elif isinstance(given, list):
        if not isinstance(written, list):
            problems.append(f"{path}: a list where the schema has {type(written).__name__}")
            return
        if len(written) != len(given):
            problems.append(f"{path}: {len(given)} items were read as {len(written)}")
            return
        for index, (mine, theirs) in enumerate(zip(given, written, strict=True)):
            _diff(mine, theirs, f"{path}[{index}]", problems)
    elif given != written or type(given) is not type(written):
        problems.append(f"{path}: {given!r} was read as {written!r}")

"""The values of OTLP JSON: ids, int64 and double encodings, strings, enums, ``AnyValue`` and
``KeyValue`` lists, each read as the OTLP/JSON encoding and proto3 JSON allow and checked.

Both ways of reading a line (``otlp_json``, field by field, and ``otlp_typed``, msgspec Structs) build
their values here, so a value reads the same whichever way its line went. A value that is not valid
raises ``_InvalidLine`` with the reason, which becomes the line's problem.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from types import MappingProxyType
from typing import Any, Final

from amqadf_agent.analyzer.model import Attributes, Value

_EMPTY: Final[Attributes] = MappingProxyType({})


class _InvalidLine(Exception):
    """A line is not valid OTLP JSON; the message is the reason (it becomes a problem, never escapes)."""


_HEX: Final = {32: re.compile(r"[0-9a-fA-F]{32}").fullmatch, 16: re.compile(r"[0-9a-fA-F]{16}").fullmatch}
#: Lengths of a 16- or 8-byte id written as base64 (what protobuf's json_format would write).
_BASE64_LENGTHS: Final = {32: (22, 24), 16: (11, 12)}
_ZERO_IDS: Final = {32: "0" * 32, 16: "0" * 16}
_LOWER_HEX: Final = "0123456789abcdef"
_INT_TEXT: Final = re.compile(r"-?[0-9]{1,20}").fullmatch
_FLOAT_TEXT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?").fullmatch
_FLOAT_WORDS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

#: Ids already checked, raw text -> lower-case hex: a trace id comes back with every span of its
#: trace, a span id as the parent of its children. A cache only (every entry is a valid, non-zero id of
#: that length), emptied when it reaches ``_ID_MEMO_SIZE``; sharing it between threads is harmless.
_TRACE_IDS: Final[dict[str, str]] = {}
_SPAN_IDS: Final[dict[str, str]] = {}
_ID_MEMO_SIZE: Final = 8192


def _memo_id(value: Any, digits: int, what: str, required: bool, memo: dict[str, str]) -> str:
    """``_id``, remembering a valid non-zero id in ``memo`` (``value`` missed it)."""
    if (
        type(value) is str
        and len(value) == digits
        and not value.strip(_LOWER_HEX)
        and value != _ZERO_IDS[digits]
    ):
        text = value  # already lower-case hex (what producers write): _id would return it unchanged
    else:
        text = _id(value, digits, what, required=required)
    if text:
        if len(memo) >= _ID_MEMO_SIZE:
            memo.clear()
        memo[value] = text
    return text


def _attrs(value: Any, what: str) -> Attributes:
    """A ``KeyValue`` list as a mapping (one shared empty mapping when there is none)."""
    if not value:
        if value is None or type(value) is list:
            return _EMPTY
        raise _InvalidLine(f"{what}: expected a list, got {_kind(value)}")
    return _kvlist(value, what)


class _LeftToCheckedLoop(Exception):
    """An encoding the inline path of ``_kvlist`` leaves to the checked one (never escapes)."""


def _kvlist(value: Any, what: str) -> dict[str, Value]:
    # The hot path of the reader (every attribute of every span): string and integer values read
    # inline, with subscripts; anything else (a missing key or value, a non-object entry, a string or
    # integer in another encoding) makes the checked loop read the list again, from the start. A bad
    # value of another kind raises from _any here exactly as it would there.
    if type(value) is list:
        out: dict[str, Value] = {}
        try:
            for entry in value:
                key = entry["key"]  # a non-object entry: TypeError
                inner = entry["value"]
                if type(key) is not str or type(inner) is not dict:
                    raise _LeftToCheckedLoop
                if "stringValue" in inner:
                    text = inner["stringValue"]
                    if type(text) is not str:
                        raise _LeftToCheckedLoop
                    out[key] = text
                elif "intValue" in inner:
                    number = inner["intValue"]
                    if not (
                        type(number) is str and number.isdigit() and number.isascii() and len(number) <= 20
                    ):
                        raise _LeftToCheckedLoop
                    out[key] = int(number)
                else:
                    out[key] = _any(inner)
            return out
        except (KeyError, TypeError, _LeftToCheckedLoop):
            pass
    return _kvlist_checked(value, what)


def _kvlist_checked(value: Any, what: str) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for entry in _list(value, what):
        if type(entry) is not dict:
            raise _InvalidLine(f"{what}: expected key-value objects, got {_kind(entry)}")
        key = entry.get("key")
        if type(key) is not str:
            raise _InvalidLine(f"{what}: key: expected a string, got {_kind(key)}")
        inner = entry.get("value")
        out[key] = None if inner is None else _any(inner)
    return out


def _any(value: Any) -> Value:
    """An OTLP ``AnyValue`` as a Python value; ``None`` when empty or of a kind not known yet."""
    if type(value) is not dict:
        raise _InvalidLine(f"value: expected an AnyValue object, got {_kind(value)}")
    if "stringValue" in value:
        return _str(value["stringValue"], "stringValue")
    if "intValue" in value:
        return _int(value["intValue"], "intValue")
    if "doubleValue" in value:
        return _float(value["doubleValue"], "doubleValue")
    if "boolValue" in value:
        return _bool(value["boolValue"], "boolValue")
    if "arrayValue" in value:
        array = value["arrayValue"]
        if array is None:
            return []
        return [_any(item) for item in _list(_obj(array, "arrayValue").get("values"), "arrayValue.values")]
    if "kvlistValue" in value:
        kvlist = value["kvlistValue"]
        if kvlist is None:
            return {}
        return _kvlist(_obj(kvlist, "kvlistValue").get("values"), "kvlistValue.values")
    if "bytesValue" in value:
        return _bytes(value["bytesValue"], "bytesValue")
    return None


def _id(value: Any, digits: int, what: str, *, required: bool) -> str:
    """A trace (32) or span (16) id as lower-case hex; ``""`` when optional and absent or all zeros."""
    if value is None or value == "":
        if required:
            raise _InvalidLine(f"{what}: missing")
        return ""
    if type(value) is not str:
        raise _InvalidLine(f"{what}: expected {digits} hex digits, got {_kind(value)}")
    if _HEX[digits](value) is None:
        hint = " (base64?)" if len(value) in _BASE64_LENGTHS[digits] else ""
        raise _InvalidLine(f"{what}: expected {digits} hex digits, got {_short(value)}{hint}")
    text: str = value.lower()
    if text == _ZERO_IDS[digits]:
        if required:
            raise _InvalidLine(f"{what}: all zeros, an invalid id")
        return ""
    return text


def _int(value: Any, what: str) -> int:
    """An int64 written as a decimal string (the encoding) or a JSON number (other producers)."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is str and (
        (value.isdigit() and value.isascii() and len(value) <= 20) or _INT_TEXT(value) is not None
    ):
        return int(value)
    if value is None:
        return 0
    if kind is float and value.is_integer():
        return int(value)
    raise _InvalidLine(f"{what}: expected an integer, got {_short(value)}")


def _float(value: Any, what: str) -> float:
    """A double: a JSON number, or a string (``"NaN"``, ``"Infinity"``, a number) as proto3 JSON allows."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return float(value)
    if value is None:
        return 0.0
    if kind is str:
        word = _FLOAT_WORDS.get(value)
        if word is not None:
            return word
        if _FLOAT_TEXT(value) is not None:
            return float(value)
    raise _InvalidLine(f"{what}: expected a number, got {_short(value)}")


def _optional_float(value: Any, what: str) -> float | None:
    return None if value is None else _float(value, what)


def _str(value: Any, what: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _InvalidLine(f"{what}: expected a string, got {_kind(value)}")


def _bool(value: Any, what: str) -> bool:
    if value is True or value is False:
        return bool(value)
    if value is None:
        return False
    raise _InvalidLine(f"{what}: expected true or false, got {_short(value)}")


def _bytes(value: Any, what: str) -> bytes:
    """Base64, standard or URL-safe, padded or not (proto3 JSON accepts each)."""
    if value is None:
        return b""
    if type(value) is str:
        text = value.replace("-", "+").replace("_", "/")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _InvalidLine(f"{what}: expected base64, got {_short(value)}")


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if value is None:
        return 0
    if kind is str and value in names:
        return names[value]
    raise _InvalidLine(f"{what}: expected an enum number, got {_short(value)}")


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is list:
        return value
    if value is None:
        return []
    raise _InvalidLine(f"{what}: expected a list, got {_kind(value)}")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise _InvalidLine(f"{what}: expected an object, got {_kind(value)}")


_JSON_KINDS: Final = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    type(None): "null",
}


def _kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "a number")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

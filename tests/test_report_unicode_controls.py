"""Unicode bidirectional controls and C1 controls from the data are neutralised in every report format.

A ``service.name`` or statement holding U+202E (right-to-left override) shows other text than it
holds; a C1 control (U+009B, the one-character CSI) is a terminal escape. Text and Markdown show
both as escapes, HTML too, and ``--format json`` keeps them as ``\\uXXXX`` escapes: the same strings
to a parser, nothing raw on a terminal or in an editor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from amqadf_agent.cli.analyze import main

#: Right-to-left override, the isolates and their pop, a mark, then C1 controls (CSI clears the screen).
HOSTILE = "\u202eevil\u202c\u2066x\u2069\u200f\u061c\x9b2J\x85\x9d"
#: Any bidirectional or C1 control, raw.
RAW = re.compile("[\u0080-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _telemetry(path: Path) -> Path:
    path.mkdir()
    spans = []
    for i in range(12):
        start = 1_700_000_000_000_000_000 + i * 1_000_000_000
        spans.append(
            {
                "traceId": f"{i + 1:032x}",
                "spanId": f"{i + 1:016x}",
                "name": f"GET /{HOSTILE}",
                "kind": 3,
                "startTimeUnixNano": str(start),
                "endTimeUnixNano": str(start + 900_000_000),
                "attributes": [
                    _kv("db.system.name", "postgresql"),
                    _kv("db.query.text", f'SELECT a FROM "t{HOSTILE}" WHERE b = {i}'),
                ],
            }
        )
    line = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_kv("service.name", f"shop{HOSTILE}")]},
                "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
            }
        ]
    }
    (path / "t.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    (path / f"bad{HOSTILE}.jsonl").write_text("{not json\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "json"])
def test_no_bidi_or_c1_control_of_the_data_reaches_the_report_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    data = _telemetry(tmp_path / "hostile")
    assert main([str(data), "--format", fmt]) == 0
    captured = capsys.readouterr()
    for out in (captured.out, captured.err):
        assert RAW.search(out) is None, (fmt, RAW.search(out))
    if fmt == "json":
        # still valid JSON, and the strings are the data's, whole
        report = json.loads(captured.out)
        assert f"shop{HOSTILE}" in json.dumps(report, ensure_ascii=False)
        assert "\\u202e" in captured.out and "\\u009b" in captured.out
    else:
        assert "shop\\u202eevil\\u202c\\u2066x\\u2069" in captured.out
        assert "\\x9b2J" in captured.out

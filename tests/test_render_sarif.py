"""SARIF results point at the code: the finding's ``locations`` as physical and related locations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from amqadf_agent.analyzer.recommendation import CodeLocation, Evidence, Recommendation
from amqadf_agent.analyzer.render_sarif import sarif_log

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "sarif-schema-2.1.0.json").read_text("utf-8"))


def _finding(locations: tuple[CodeLocation, ...], numbers: dict[str, Any] | None = None) -> dict[str, Any]:
    evidence = Evidence(numbers or {"calls": 30}, "calls per parent", "calls >= 5", trace_ids=("a" * 32,))
    recommendation = Recommendation(
        "database", "n_plus_one", "high", "N+1 queries", "Load them in one query.",
        "SELECT * FROM items WHERE order_id = ?", evidence, 0.8, impact_s=1.0, locations=locations,
    )  # fmt: skip
    return recommendation.to_dict()


def _result(finding: dict[str, Any]) -> dict[str, Any]:
    log = sarif_log({"recommendations": [finding]})
    jsonschema.validate(log, SCHEMA)
    (result,) = log["runs"][0]["results"]
    return result


def test_the_line_with_most_calls_is_the_location_and_the_others_are_related() -> None:
    locations = (
        CodeLocation("/srv/app/shop/views.py", 42, "orders", 20, 20 / 30),
        CodeLocation("/srv/app/shop/jobs.py", 7, "nightly", 9, 9 / 30),
        CodeLocation("C:\\app\\my shop\\admin.py", 3, "", 1, 1 / 30),
    )
    # code.* in the evidence too: the finding's locations win (they count every call)
    result = _result(_finding(locations, {"code.file.path": "/other.py", "code.line.number": 1}))
    [primary] = result["locations"]
    assert primary["physicalLocation"] == {
        "artifactLocation": {"uri": "srv/app/shop/views.py"},
        "region": {"startLine": 42},
    }
    assert primary["message"] == {"text": "orders; 20 calls, 67%"}
    assert primary["logicalLocations"][0]["name"] == "SELECT * FROM items WHERE order_id = ?"
    assert result["relatedLocations"] == [
        {
            "id": 1,
            "physicalLocation": {
                "artifactLocation": {"uri": "srv/app/shop/jobs.py"},
                "region": {"startLine": 7},
            },
            "message": {"text": "nightly; 9 calls, 30%"},
        },
        {
            "id": 2,
            # a Windows path: forward slashes, the drive's colon and the space percent-encoded
            "physicalLocation": {
                "artifactLocation": {"uri": "C%3A/app/my%20shop/admin.py"},
                "region": {"startLine": 3},
            },
            "message": {"text": "1 calls, 3%"},
        },
    ]


def test_one_location_has_no_related_locations() -> None:
    result = _result(_finding((CodeLocation("app.py", 12, "orders", 30, 1.0),)))
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "app.py"}
    assert "relatedLocations" not in result


def test_without_locations_the_evidence_code_attributes_still_place_the_result() -> None:
    result = _result(_finding((), {"code.filepath": "/app/views.py", "code.lineno": 9}))
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "app/views.py"},
        "region": {"startLine": 9},
    }
    bare = _result(_finding(()))
    assert "physicalLocation" not in bare["locations"][0] and "relatedLocations" not in bare


def test_odd_locations_are_skipped_not_fatal() -> None:
    finding = _finding(())
    finding["locations"] = [{"file": ""}, "x", {"file": "a.py", "line": 0}, {"file": "b.py", "line": "7"}]
    result = _result(finding)
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "a.py"}}
    assert result["relatedLocations"] == [
        {"id": 1, "physicalLocation": {"artifactLocation": {"uri": "b.py"}}}
    ]


def test_paths_under_a_source_root_are_relative_to_it_for_code_scanning() -> None:
    locations = (
        CodeLocation("/srv/app/shop/views.py", 42, "orders", 20, 20 / 30),
        CodeLocation("/usr/lib/python3/shutil.py", 7, "copy", 9, 9 / 30),  # outside: as without a root
        CodeLocation("C:\\work\\shop\\admin.py", 3, "", 1, 1 / 30),
    )
    finding = _finding(locations)
    # GIVEN the path the app ran from in its container (a trailing slash or not)
    log = sarif_log({"recommendations": [finding]}, ["/srv/app/"])
    jsonschema.validate(log, SCHEMA)
    [run] = log["runs"]
    [result] = run["results"]
    # THEN its files are named relative to it, against %SRCROOT% (the checkout), and where it was is said
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "shop/views.py",
        "uriBaseId": "%SRCROOT%",
    }
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///srv/app/"}}
    related = [r["physicalLocation"]["artifactLocation"] for r in result["relatedLocations"]]
    assert related == [{"uri": "usr/lib/python3/shutil.py"}, {"uri": "C%3A/work/shop/admin.py"}]
    # AND with two roots (the container's and a Windows checkout's) both map; the longest root wins
    log = sarif_log({"recommendations": [finding]}, ["/srv", "/srv/app", "C:\\work\\"])
    jsonschema.validate(log, SCHEMA)
    [run] = log["runs"]
    [result] = run["results"]
    artifacts = [result["locations"][0]["physicalLocation"]["artifactLocation"]] + [
        r["physicalLocation"]["artifactLocation"] for r in result["relatedLocations"]
    ]
    assert [a["uri"] for a in artifacts] == ["shop/views.py", "usr/lib/python3/shutil.py", "shop/admin.py"]
    assert [a.get("uriBaseId") for a in artifacts] == ["%SRCROOT%", None, "%SRCROOT%"]
    assert "originalUriBaseIds" not in run
    # AND a root that is the file itself, or "/", names nothing relative to it
    log = sarif_log({"recommendations": [finding]}, ["/", "/srv/app/shop/views.py"])
    [result] = log["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": "srv/app/shop/views.py"}

"""The README and docs/ say what the code does: the generated contract page, links, the JSON schema."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_contract", DOCS / "generate_contract.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contract_page_is_the_one_rendered_from_semconv() -> None:
    page = (DOCS / "telemetry-contract.md").read_text(encoding="utf-8")
    assert page == _generator().render(), "regenerate with: python docs/generate_contract.py"


def test_contract_page_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    generator = _generator()
    stale = tmp_path / "telemetry-contract.md"
    stale.write_text(generator.render().replace("| `amqadf.retry.calls` |", "| `amqadf.retry.call` |"))
    vars(generator)["PAGE"] = stale
    assert generator.main(["--check"]) == 1
    generator.main([])
    assert generator.main(["--check"]) == 0


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not missing, missing


def test_readme_stays_a_five_minute_read() -> None:
    # The manual lives in docs/; the README keeps what a newcomer needs first.
    assert len(README.read_bytes()) < 12 * 1024


def _fenced_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(marker) + r"\n```\w*\n(.*?)\n```", text, flags=re.S)
    assert match, marker
    return match.group(1)


def test_readme_test_command_installs_what_the_tests_need_first() -> None:
    command = _fenced_after("<!-- test-command -->")
    assert command.startswith(".ci/install-deps && ")
    assert "pytest" in command
    assert (ROOT / ".ci" / "install-deps").stat().st_mode & 0o111


def test_readme_main_command_runs_the_demo_then_the_analyzer() -> None:
    command = _fenced_after("<!-- main-command -->")
    assert command.index("amqadf-agent demo") < command.index("amqadf-analyze telemetry")


def _documented_keys() -> set[str]:
    text = (DOCS / "analyzer.md").read_text(encoding="utf-8")
    schema = text.split("## JSON schema", 1)[1]
    return set(re.findall(r'"(\w+)"', schema))


def _keys(value: Any, skip: frozenset[str] = frozenset({"numbers"})) -> set[str]:
    """Every key of a JSON value, at any depth, but not inside ``evidence.numbers`` (data, not schema)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            if key not in skip:
                found |= _keys(item, skip)
    elif isinstance(value, list):
        for item in value:
            found |= _keys(item, skip)
    return found


def test_every_key_of_the_json_report_is_in_the_documented_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "amqadf_agent.cli.analyze", "tests/fixtures/otlp", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    ).stdout
    report = json.loads(out)
    assert report["scaling"]["timeline"], "the fixture gives a scaling timeline"
    # a report with recommendations, caches, pools and queries, as the renderers read it
    fixture = json.loads((ROOT / "tests" / "fixtures" / "report_v2.json").read_text(encoding="utf-8"))
    assert fixture["recommendations"] and fixture["cache"] and fixture["threads"] and fixture["top_queries"]
    undocumented = (_keys(report) | _keys(fixture)) - _documented_keys()
    assert not undocumented, sorted(undocumented)

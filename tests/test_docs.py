"""The documents a newcomer reads: the data contract's examples are a valid package, and the
README's links and commands point at things that exist."""

from __future__ import annotations

import re
from pathlib import Path

from ews.validate import validate_package

ROOT = Path(__file__).resolve().parents[1]


def test_the_contract_examples_are_a_valid_package(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "contract.md").read_text()
    blocks = re.findall(r"```csv\n(.*?)```", text, flags=re.S)
    for block in blocks:
        header = block.split("\n", 1)[0].split(",")
        table = "events" if "event_id" in header else "assignments" if "kind" in header else ""
        (tmp_path / f"{table or 'officers'}.csv").write_text(block)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "assignments.csv",
        "events.csv",
        "officers.csv",
    ]
    v = validate_package(tmp_path)
    assert v.ok, v.report_lines()
    assert v.input_rows == {"officers": 3, "events": 5, "assignments": 4}


def test_the_readme_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)\)", readme)
    assert "docs/contract.md" in links
    for link in links:
        assert (ROOT / link).exists(), link


def test_the_ews_wrapper_runs_the_venv_command() -> None:
    wrapper = ROOT / "scripts" / "ews"
    assert wrapper.stat().st_mode & 0o111, "scripts/ews must be executable"
    assert ".venv/bin/ews" in wrapper.read_text()

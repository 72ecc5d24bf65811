"""Indicators that mean the same in every agency (issue 17 item 6): events.category_group maps
an agency's own categories to the spec's concepts; `ews validate` checks it; the default
spec's excessive-force indicators read it (Chicago's "05" prefix only for events without a
group); a concept that matches no event is named with its cause before the work."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from ews_testdata import valid_tables, write_package  # noqa: I001  (tests/ is on sys.path)
from typer.testing import CliRunner

from ews.cli import app
from ews.contract import CATEGORY_GROUPS, write_normalized
from features.build import build_features
from features.diagnostics import concept_lines
from features.spec import default_spec

runner = CliRunner()
# another city's complaint categories: no Chicago code anywhere
CATEGORIES = ["FORCE", "ABUSE OF AUTHORITY", "DISCOURTESY", "OFFENSIVE LANGUAGE"]
GROUPS = {
    "FORCE": "excessive_force",
    "ABUSE OF AUTHORITY": "abuse_of_authority",
    "DISCOURTESY": "verbal_abuse",
    "OFFENSIVE LANGUAGE": "verbal_abuse",
}
DAY = dt.date(2016, 1, 1)


def _package(folder: Path, categories: list[str], groups: list[str] | None) -> Path:
    """Four officers; officer o1 has three complaints of the first category in 2015, the
    others one complaint each of the other categories."""
    officers = pd.DataFrame(
        {"officer_id": ["o1", "o2", "o3", "o4"], "appointed_date": ["2005-01-01"] * 4}
    )
    cats = [categories[0]] * 3 + categories[1:4]
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(6)],
            "officer_id": ["o1", "o1", "o1", "o2", "o3", "o4"],
            "event_type": "complaint",
            "event_date": ["2015-03-01", "2015-05-01", "2015-07-01", "2015-04-01"]
            + ["2015-06-01", "2015-08-01"],
            "case_id": [f"c{i}" for i in range(6)],
            "category": cats,
        }
    )
    if groups is not None:
        events["category_group"] = groups
    write_normalized(folder, officers, events)
    return folder


def test_another_citys_force_complaints_are_named_then_counted_once_mapped(
    tmp_path: Path,
) -> None:
    spec = default_spec()
    bare = _package(tmp_path / "bare", CATEGORIES, None)
    (line,) = concept_lines(bare, spec)
    # the concept, its cause and the cure, before any work
    assert line.startswith("excessive-force complaints (force_complaint, ")
    assert "no event of the data is complaint events with category_group 'excessive_force'" in line
    assert "'FORCE' (3)" in line and "category_group (docs/contract.md)" in line
    before = build_features(bare, [DAY]).set_index("officer_id")
    assert (before["force_complaint_1y_count"] == 0).all()  # constant: the old symptom

    mapped = _package(
        tmp_path / "mapped", CATEGORIES, [GROUPS[c] for c in [CATEGORIES[0]] * 3 + CATEGORIES[1:]]
    )
    assert concept_lines(mapped, spec) == []
    after = build_features(mapped, [DAY]).set_index("officer_id")
    assert after["force_complaint_1y_count"].to_dict() == {"o1": 3, "o2": 0, "o3": 0, "o4": 0}
    assert after["complaint_1y_count"].to_dict() == before["complaint_1y_count"].to_dict()


def test_a_package_without_the_column_falls_back_to_chicagos_prefix(tmp_path: Path) -> None:
    """Backwards compatible: a cpdp-derived package from before the column keeps its
    excessive-force counts, and is told that the prefix is an agency's own code; a group
    given decides over the prefix."""
    spec = default_spec()
    chicago = ["05A EXCESSIVE FORCE", "01A VERBAL ABUSE", "10J NEGLECT", "03E ILLEGAL SEARCH"]
    old = _package(tmp_path / "old", chicago, None)
    (line,) = concept_lines(old, spec)
    assert "found by the category prefix '05' only (3 events)" in line
    feats = build_features(old, [DAY]).set_index("officer_id")
    assert feats.loc["o1", "force_complaint_1y_count"] == 3
    # a group says otherwise: the group decides (the 05 prefix is not read)
    contrary = _package(tmp_path / "contrary", chicago, ["other"] * 6)
    feats = build_features(contrary, [DAY]).set_index("officer_id")
    assert (feats["force_complaint_1y_count"] == 0).all()


def test_validate_checks_the_groups(tmp_path: Path) -> None:
    tables = valid_tables()
    n = len(tables["events"]["event_id"])
    tables["events"]["category_group"] = ["excessive_force"] + [None] * (n - 1)
    ok = runner.invoke(app, ["validate", str(write_package(tmp_path / "ok", tables))])
    assert ok.exit_code == 0, ok.output
    tables["events"]["category_group"][1] = "use of force"
    bad = runner.invoke(app, ["validate", str(write_package(tmp_path / "bad", tables))])
    assert bad.exit_code == 2
    assert "events.csv row 2, category_group: must be one of excessive_force" in bad.stdout


def test_synth_and_cpdp_fill_the_groups(tmp_path: Path) -> None:
    from ews.adapters.cpdp import category_group
    from ews.contract import read_normalized
    from ews.synth import synthesize

    cats = pd.Series(["05A EXCESSIVE FORCE", "01A USE OF PROFANITY", "S0 STRIKE", "", None])
    assert category_group(cats).tolist() == [
        "excessive_force",
        "verbal_abuse",
        "other",
        "",
        "",
    ]
    synthesize(tmp_path / "syn", officers=60, years=3, seed=1, quiet=True)
    ev = read_normalized(tmp_path / "syn").events
    complaints = ev[ev["event_type"] == "complaint"]
    assert set(complaints["category_group"].dropna()) <= set(CATEGORY_GROUPS)
    force = complaints["category"].fillna("").str.startswith("05")
    # the synthetic agency's groups agree with its Chicago-style codes
    assert (complaints.loc[force, "category_group"] == "excessive_force").all()
    assert not (complaints.loc[~force, "category_group"] == "excessive_force").any()
    assert concept_lines(tmp_path / "syn", default_spec()) == []


def test_features_build_names_the_concept_before_the_work(tmp_path: Path) -> None:
    bare = _package(tmp_path / "bare", CATEGORIES, None)
    out = tmp_path / "f.parquet"
    result = runner.invoke(
        app,
        ["features", "build", "--package", str(bare), "--as-of", "2016-01-01", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "warning: excessive-force complaints (force_complaint" in result.stderr
    assert out.is_file()


@pytest.mark.parametrize("group", [None, "excessive_force"])
def test_the_spec_refuses_an_unknown_group_and_keeps_old_hashes(group: str | None) -> None:
    from features.spec import FeatureSpec

    raw = {
        "name": "x",
        "sources": {"c": {"event_type": "complaint", "category_prefix": "05"}},
        "aggregates": [{"sources": ["c"], "windows": ["1y"], "metrics": ["count"]}],
    }
    plain = FeatureSpec.model_validate(raw)
    if group is None:  # a spec without a group hashes as before the field existed
        import hashlib
        import json

        dumped = plain.model_dump(mode="json")
        dumped["sources"]["c"].pop("category_group")
        expect = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:12]
        assert plain.hash == expect
    else:
        raw["sources"]["c"]["category_group"] = group
        assert FeatureSpec.model_validate(raw).hash != plain.hash
        raw["sources"]["c"]["category_group"] = "force"
        with pytest.raises(ValueError, match="category_group 'force': use one of"):
            FeatureSpec.model_validate(raw)

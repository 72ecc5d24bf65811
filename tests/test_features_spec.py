"""Feature spec validation, naming and the default spec's promised columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from features_reference import TEST_SPEC  # noqa: I001  (tests/ is on sys.path)

from features.spec import SpecError, default_spec, load_spec, spec_from_dict


def _spec(**over):
    return {**TEST_SPEC, **over}


def test_default_spec_has_the_columns_rules_rely_on() -> None:
    spec = default_spec()
    names = set(spec.column_names)
    for col in [
        "complaint_90d_count",
        "complaint_180d_count",
        "complaint_1y_count",
        "use_of_force_90d_count",
        "use_of_force_180d_count",
        "use_of_force_1y_count",
        "complaint_1y_sustained",
        "use_of_force_1y_count_unit_pct",
        "complaint_1y_count_unit_pct",
        "use_of_force_180d_count_unit_ratio",
        "use_of_force_180d_count_unit_z",
        "tenure_years",
        "unit",
        "rank",
        "complaint_network_3y_count",
        "complaint_network_3y_complaint_career_sustained_share",
        "complaint_network_career_force_complaint_career_count_max",
    ]:
        assert col in names, col
    assert 60 <= len(spec.columns) <= 140
    assert not names & {"race", "sex", "age_years"}  # age is no input by default either
    assert {c.family for c in spec.columns} >= {"count", "sustained", "peer", "attribute"}


def test_descriptions_format_with_value_and_group() -> None:
    spec = default_spec()
    by = {c.name: c for c in spec.columns}
    text = by["use_of_force_180d_count_unit_ratio"].description_template.format(
        value=3.0, unit="007", rank="PO"
    )
    assert "3.0 times the average of unit 007" in text
    assert by["complaint_1y_count"].description_template.format(value=4) == (
        "4 complaints in the last year"
    )
    df = spec.describe()
    assert list(df.columns[:3]) == ["name", "family", "description_template"]
    assert len(df) == len(spec.columns)


def test_counts_by_finding_are_named_and_described() -> None:
    spec = spec_from_dict(TEST_SPEC)
    by = {c.name: c for c in spec.columns}
    col = by["force_complaint_career_unfounded"]
    assert (col.family, col.dtype, col.metric) == ("finding", "int", "unfounded")
    assert by["complaint_1y_not_sustained"].description_template.format(value=2) == (
        "2 complaint events in the last year found not sustained"
    )
    with pytest.raises(SpecError, match="unknown metric 'dismissed'"):
        spec_from_dict(
            _spec(
                aggregates=[{"sources": ["complaint"], "windows": ["1y"], "metrics": ["dismissed"]}]
            )
        )


def test_network_descriptions_read_as_sentences() -> None:
    from models.rules import render_template

    by = {c.name: c for c in default_spec().columns}
    share = by["complaint_network_3y_complaint_career_sustained_share"]
    text = render_template(share.description_template, value=0.6, complaint_network_3y_count=5.0)
    assert text == "3 of the officer's 5 co-accused in the last 3 years had a sustained finding"
    count = by["complaint_network_career_count"].description_template
    assert render_template(count, value=12) == "12 co-accused so far"
    mx = by["complaint_network_3y_force_complaint_career_count_max"].description_template
    assert render_template(mx, value=7.0) == (
        "one of the officer's co-accused in the last 3 years had 7 excessive-force complaints"
    )
    assert {c.family for c in by.values() if "_network_" in c.name} == {"network"}


def test_hash_is_stable_and_tracks_content() -> None:
    a, b = spec_from_dict(TEST_SPEC), spec_from_dict(dict(TEST_SPEC))
    assert a.hash == b.hash and len(a.hash) == 12
    c = spec_from_dict(_spec(attributes=["tenure_years"]))
    assert c.hash != a.hash


@pytest.mark.parametrize(
    "change, message",
    [
        ({"attributes": ["race"]}, "race and sex are never features"),
        ({"attributes": ["sex"]}, "protected attribute"),
        (
            {"peers": [{"columns": ["complaint_1y_count"], "by": ["race"], "stats": ["z"]}]},
            "protected attribute",
        ),
        ({"sources": {"sex": {"event_type": "complaint"}}}, "protected attribute"),
        (
            {"aggregates": [{"sources": ["nope"], "windows": ["1y"], "metrics": ["count"]}]},
            "unknown source 'nope'",
        ),
        (
            {"aggregates": [{"sources": ["complaint"], "windows": ["12m"], "metrics": ["x"]}]},
            "unknown metric 'x'",
        ),
        (
            {
                "aggregates": [
                    {"sources": ["complaint"], "windows": ["365 days"], "metrics": ["count"]}
                ]
            },
            "write it as '365d'",
        ),
        (
            {"aggregates": [{"sources": ["complaint"], "windows": ["soon"], "metrics": ["count"]}]},
            "not a duration",
        ),
        (
            {
                "aggregates": [
                    {"sources": ["complaint"], "windows": ["career"], "metrics": ["trend"]}
                ]
            },
            "trend needs a finite window",
        ),
        (
            {"aggregates": [{"sources": ["complaint"], "metrics": ["per100_stops"]}]},
            "needs a source named 'stops'",
        ),
        (
            {
                "aggregates": [
                    {"sources": ["complaint"], "windows": ["1y"], "metrics": ["count"]},
                    {"sources": ["complaint"], "windows": ["1y"], "metrics": ["count"]},
                ],
                "peers": [],
                "networks": [],
            },
            "duplicate column names: complaint_1y_count",
        ),
        (
            {"peers": [{"columns": ["complaint_9y_count"], "by": ["unit"], "stats": ["z"]}]},
            "not an aggregate column",
        ),
        ({"networks": [{"ties": "nope"}]}, "networks\\[0\\]: unknown source 'nope'"),
        (
            {"networks": [{"ties": "complaint", "histories": ["complaint_9y_count"]}]},
            "networks\\[0\\]: 'complaint_9y_count' is not an aggregate column",
        ),
        (
            {"networks": [{"ties": "complaint", "histories": ["complaint_1y_days_since"]}]},
            "network histories are count or sustained columns",
        ),
        (
            {"networks": [{"ties": "complaint", "windows": ["3 years"]}]},
            "write it as '3y'",
        ),
        ({"networks": [{"ties": "complaint", "stats": ["median"]}]}, "networks.0.stats.0"),
        (
            {"networks": [{"ties": "complaint"}, {"ties": "complaint"}]},
            "duplicate column names: complaint_network_career_count",
        ),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec_from_dict(_spec(**change))


def test_peer_base_must_be_a_count_like_column() -> None:
    bad = _spec(
        peers=[{"columns": ["complaint_1y_share_sustained"], "by": ["unit"], "stats": ["z"]}]
    )
    with pytest.raises(SpecError, match="peer statistics are defined on"):
        spec_from_dict(bad)


def test_load_spec_validates_yaml_files(tmp_path: Path) -> None:
    import yaml

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TEST_SPEC))
    assert load_spec(good).column_names == spec_from_dict(TEST_SPEC).column_names
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r"bad2.yaml: attributes: attribute 'race'"):
        (tmp_path / "bad2.yaml").write_text(yaml.safe_dump(_spec(attributes=["race"])))
        load_spec(tmp_path / "bad2.yaml")

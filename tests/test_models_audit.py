"""The bias audit: flag rates and, once outcomes are known, accuracy by group."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from ews.contract import write_normalized
from ews.flagstore import save_flags
from ews.ingest import ingest_package
from models.audit import disparities


def _agency(tmp_path: Path) -> Path:
    n = 60
    ids = [f"o{i}" for i in range(n)]
    officers = pd.DataFrame(
        {
            "officer_id": ids,
            "appointed_date": ["2010-01-01"] * n,
            "sex": ["F" if i < 20 else "M" for i in range(n)],
            "race": ["A" if i % 2 else "B" for i in range(n)],
        }
    )
    # a complaint in 2020 for officers 0-9 (F) and 20-39 (M); data run to 2021-06-01
    who = list(range(10)) + list(range(20, 40))
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in who] + ["last"],
            "officer_id": [ids[i] for i in who] + [ids[59]],
            "event_type": ["complaint"] * len(who) + ["arrest"],
            "event_date": ["2020-03-01"] * len(who) + ["2021-06-01"],
        }
    )
    return write_normalized(tmp_path / "pkg", officers, events)


def test_disparities_by_group_with_known_outcomes(ews_home: Path, tmp_path: Path) -> None:
    snap = ingest_package(_agency(tmp_path), "town").snapshot
    # flagged: officers 0-4 (F, all with the outcome) and 20-29 + 40-49 (M: half with it)
    flagged = [i in range(5) or i in range(20, 30) or i in range(40, 50) for i in range(60)]
    flags = pd.DataFrame(
        {
            "officer_id": [f"o{i}" for i in range(60)],
            "flagged": flagged,
            "snapshot_id": snap.id,
            "label": "any_complaint",
        }
    )
    save_flags("town", dt.date(2020, 1, 1), flags)
    r = disparities("town", min_group=10)
    assert r["outcome_known"] is True and r["officers"] == 60 and r["flagged"] == 25
    sex = {g["group"]: g for g in r["by"]["sex"]["groups"]}
    assert sex["F"]["flag_rate"] == pytest.approx(5 / 20)
    assert sex["M"]["flag_rate"] == pytest.approx(20 / 40)
    assert sex["F"]["outcome_rate"] == pytest.approx(10 / 20)
    assert sex["F"]["precision"] == 1.0 and sex["M"]["precision"] == pytest.approx(0.5)
    assert sex["F"]["true_positive_rate"] == pytest.approx(5 / 10)
    assert sex["M"]["false_positive_rate"] == pytest.approx(10 / 20)
    assert sex["F"]["false_positive_rate"] == 0.0
    assert r["by"]["sex"]["min_over_max"]["flag_rate"] == pytest.approx(0.5)
    assert {g["group"] for g in r["by"]["race"]["groups"]} == {"A", "B"}


def test_outcomes_not_yet_known_give_flag_rates_only(ews_home: Path, tmp_path: Path) -> None:
    snap = ingest_package(_agency(tmp_path), "town").snapshot
    flags = pd.DataFrame(
        {
            "officer_id": ["o0", "o25"],
            "flagged": [True, False],
            "snapshot_id": snap.id,
            "label": "any_complaint",
        }
    )
    save_flags("town", dt.date(2021, 1, 1), flags)  # the year after is not covered
    r = disparities("town", min_group=5)
    assert r["outcome_known"] is False
    assert r["by"]["sex"]["groups"] == [
        {"group": "F", "officers": 1}, {"group": "M", "officers": 1}
    ]  # fmt: skip


def test_in_sample_dates_are_refused_unless_asked(
    ews_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ews.cli import app
    from models import registry
    from models.audit import InSampleError

    snap = ingest_package(_agency(tmp_path), "town").snapshot
    flags = pd.DataFrame(
        {
            "officer_id": [f"o{i}" for i in range(60)],
            "flagged": [i < 10 for i in range(60)],
            "snapshot_id": snap.id,
            "label": "any_complaint",
            "model_name": "ews-town-any_complaint",
            "model_version": "2",
        }
    )
    save_flags("town", dt.date(2020, 1, 1), flags)
    # the model that scored 2020-01-01 learned outcomes known up to 2021-01-01
    tags = {"ews.label_known_by": "2021-01-01"}
    monkeypatch.setattr(registry, "version_tags", lambda n, v, uri=None: tags if v == "2" else None)
    with pytest.raises(InSampleError, match="in-sample.*2021-01-01"):
        disparities("town", min_group=10)
    marked = disparities("town", min_group=10, allow_in_sample=True)
    assert marked["in_sample"] is True and marked["label_cutoff"] == "2021-01-01"
    runner = CliRunner()
    refused = runner.invoke(app, ["audit", "disparities", "--agency", "town"])
    assert refused.exit_code == 2 and "in-sample" in refused.output
    assert "--allow-in-sample" in refused.output
    shown = runner.invoke(
        app, ["audit", "disparities", "--agency", "town", "--allow-in-sample", "--min-group", "5"]
    )
    assert shown.exit_code == 0 and "IN-SAMPLE" in shown.output
    # held out: the same flags, scored by a model whose cutoff is the date itself
    tags["ews.label_known_by"] = "2020-01-01"
    held = disparities("town", min_group=10)
    assert held["in_sample"] is False and "held out" in held["sample_note"]
    # a model the registry does not hold: not refused, but said to be unchecked
    save_flags("town", dt.date(2020, 1, 1), flags.assign(model_version="9"))
    unknown = disparities("town", min_group=10)
    assert unknown["in_sample"] is None and "not in the model registry" in unknown["sample_note"]

"""Outcome labels: did an officer of the cohort at t have an adverse outcome in the window
after t?

An event counts for the label at t when ``t <= reported_date < t + window`` and it matches
one of the label's clauses (event type, optionally a category prefix and a finding). With
``known_by`` (the date the labels are computed, e.g. the training cut-off at deployment)
only what is known by then counts: ``reported_date < known_by``, and a clause that asks for
a finding needs ``finding_date < known_by`` (label maturity: the newest labels are still
pending). Without ``known_by`` everything in the package counts (any finding_date).

Presets (the Chicago benchmark's three labels): ``sustained`` (a complaint later sustained),
``sustained_or_force`` (that or a use-of-force report), ``any_complaint``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ews.contract import FINDINGS
from features.durations import parse_duration

if TYPE_CHECKING:
    import pandas as pd
    from ibis.backends import BaseBackend

    from ews.store import Snapshot
    from features.cohort import CohortSpec


class OutcomeClause(BaseModel):
    """One kind of event that makes the label 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: str
    finding: str | None = None
    category_prefix: str | None = None

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, v: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]*$", v):
            raise ValueError(f"event_type {v!r} must be a lower_snake_case word")
        return v

    @field_validator("finding")
    @classmethod
    def _finding(cls, v: str | None) -> str | None:
        if v is not None and (v not in FINDINGS or v == "pending"):
            raise ValueError(f"finding {v!r} must be one of {', '.join(FINDINGS[:-1])}")
        return v


class LabelSpec(BaseModel):
    """A label: a name, a window after the as-of date, and the outcomes that count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    window: str = "1y"
    any_of: list[OutcomeClause] = Field(min_length=1)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_duration(v)
        return v

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSpec:
        """Validate a label given as a dict (e.g. from YAML); ValueError names each problem."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"label spec: {problems}") from None

    @classmethod
    def preset(cls, name: str) -> LabelSpec:
        """One of the presets: sustained, sustained_or_force, any_complaint."""
        if name not in LABEL_PRESETS:
            raise ValueError(f"no label preset {name!r}: use one of {', '.join(LABEL_PRESETS)}")
        return LABEL_PRESETS[name]


LABEL_PRESETS: dict[str, LabelSpec] = {
    "sustained": LabelSpec(
        name="sustained", any_of=[OutcomeClause(event_type="complaint", finding="sustained")]
    ),
    "sustained_or_force": LabelSpec(
        name="sustained_or_force",
        any_of=[
            OutcomeClause(event_type="complaint", finding="sustained"),
            OutcomeClause(event_type="use_of_force"),
        ],
    ),
    "any_complaint": LabelSpec(
        name="any_complaint", any_of=[OutcomeClause(event_type="complaint")]
    ),
}


def build_labels(
    source: Snapshot | str | Path,
    as_of_dates: Iterable[Any],
    label: LabelSpec | str,
    known_by: dt.date | None = None,
    engine: str | BaseBackend = "duckdb",
    cohort: CohortSpec | None = None,
) -> pd.DataFrame:
    """DataFrame[officer_id, as_of_date, label (int 0/1)] for the cohort rows at each date.
    ``label`` may be a LabelSpec or a preset name."""
    import ibis

    from features.cohort import finish_keys
    from features.compile import KEYS, as_dates, cohort_expr, dates_table
    from features.engines import connect, execute, load_tables, package_folder

    spec = LabelSpec.preset(label) if isinstance(label, str) else label
    dates = as_dates(as_of_dates)
    kb = as_dates([known_by])[0] if known_by is not None else None
    con = connect(engine)
    tables = load_tables(con, package_folder(source))
    dtab = dates_table(con, dates, upper={"_hi": parse_duration(spec.window)})
    c = cohort_expr(tables, dtab, cohort)
    ev = tables.events
    match = None
    for cl in spec.any_of:
        cond = ev.event_type == cl.event_type
        if cl.category_prefix:
            cond = cond & ev.category.fill_null("").startswith(cl.category_prefix)
        if cl.finding:
            cond = cond & (ev.finding.fill_null("") == cl.finding) & ev.finding_date.notnull()
            if kb is not None:
                cond = cond & (ev.finding_date < kb)
        match = cond if match is None else (match | cond)
    assert match is not None
    if kb is not None:
        match = match & (ev.reported_date < kb)
    ev = ev.filter(match).select(e_officer_id="officer_id", reported_date="reported_date")
    keys = c.select(*KEYS, "_hi")
    j = keys.join(
        ev,
        [
            keys.officer_id == ev.e_officer_id,
            ev.reported_date >= keys.as_of_date,
            ev.reported_date < keys._hi,
        ],
    )
    hits = j.group_by(KEYS).aggregate(_n=j.officer_id.count())
    hits = hits.rename(_h_officer_id="officer_id", _h_as_of_date="as_of_date")
    out = keys.left_join(
        hits, [keys.officer_id == hits._h_officer_id, keys.as_of_date == hits._h_as_of_date]
    )
    out = out.select(*KEYS, label=ibis.ifelse(out._n.fill_null(0) > 0, 1, 0))
    df = finish_keys(execute(out))
    df["label"] = df["label"].astype("int64")
    return df

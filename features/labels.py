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
from collections.abc import Iterable, Mapping
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
    return build_label_sets(source, {known_by: as_of_dates}, label, engine, cohort)[known_by]


# the knowledge cutoff standing for "no cutoff" inside the one query (every date in a package
# is before it; 9999-12-31 is the last date DuckDB and Spark both hold)
_NO_CUTOFF = dt.date(9999, 12, 31)


def build_label_sets(
    source: Snapshot | str | Path,
    requests: Mapping[dt.date | None, Iterable[Any]],
    label: LabelSpec | str,
    engine: str | BaseBackend = "duckdb",
    cohort: CohortSpec | None = None,
) -> dict[dt.date | None, pd.DataFrame]:
    """The labels of several knowledge cutoffs in ONE query: ``requests`` maps a cutoff
    (``known_by``, None for everything in the package) to its as-of dates; returns, per
    cutoff, the frame :func:`build_labels` gives for it (the same rows, the same values).

    An experiment needs one cutoff per split (label maturity); a query each meant as many
    connections, compilations and scans of the events. Here the dates table holds one row per
    (as-of date, cutoff), and each matching event carries the dates it became known for the
    clause it matches: reported (``reported_date``) and, for a clause asking for a finding,
    found (``finding_date``); it counts at a cutoff when both are before it."""
    import ibis
    import pyarrow as pa

    from features.cohort import finish_keys
    from features.compile import KEYS, as_dates, cohort_expr
    from features.engines import connect, execute, load_tables, package_folder, temp_table

    spec = LabelSpec.preset(label) if isinstance(label, str) else label
    wanted = {
        (as_dates([kb])[0] if kb is not None else None): as_dates(dates)
        for kb, dates in requests.items()
    }
    if not wanted:
        return {}
    window = parse_duration(spec.window)
    cutoffs = list(wanted)  # a request is told apart by its index here (_req)
    rows = [
        (t, window.after(t), kb or _NO_CUTOFF, i)
        for i, kb in enumerate(cutoffs)
        for t in wanted[kb]
    ]
    con = connect(engine)
    tables = load_tables(con, package_folder(source))
    columns = {
        "as_of_date": pa.date32(),
        "_hi": pa.date32(),
        "_kb": pa.date32(),
        "_req": pa.int32(),
    }
    dtab = temp_table(
        con,
        pa.table(
            {
                name: pa.array([r[i] for r in rows], typ)
                for i, (name, typ) in enumerate(columns.items())
            }
        ),
    )
    c = cohort_expr(tables, dtab, cohort)
    ev = tables.events
    parts = []
    for cl in spec.any_of:
        cond = ev.event_type == cl.event_type
        if cl.category_prefix:
            cond = cond & ev.category.fill_null("").startswith(cl.category_prefix)
        found = ev.reported_date
        if cl.finding:
            cond = cond & (ev.finding.fill_null("") == cl.finding) & ev.finding_date.notnull()
            found = ev.finding_date
        parts.append(
            ev.filter(cond).select(
                e_officer_id=ev.officer_id,
                reported_date=ev.reported_date,
                found_date=found.cast("date"),
            )
        )
    hits_ev = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    keys = c.select(*KEYS, "_hi", "_kb", "_req")
    j = keys.join(
        hits_ev,
        [
            keys.officer_id == hits_ev.e_officer_id,
            hits_ev.reported_date >= keys.as_of_date,
            hits_ev.reported_date < keys._hi,
            hits_ev.reported_date < keys._kb,
            hits_ev.found_date < keys._kb,
        ],
    )
    hits = j.group_by([*KEYS, "_req"]).aggregate(_n=j.officer_id.count())
    hits = hits.rename(_h_officer_id="officer_id", _h_as_of_date="as_of_date", _h_req="_req")
    out = keys.left_join(
        hits,
        [
            keys.officer_id == hits._h_officer_id,
            keys.as_of_date == hits._h_as_of_date,
            keys._req == hits._h_req,
        ],
    )
    out = out.select(*KEYS, "_req", label=ibis.ifelse(out._n.fill_null(0) > 0, 1, 0))
    df = execute(out)
    req = df.pop("_req").to_numpy()
    df["label"] = df["label"].astype("int64")
    return {kb: finish_keys(df[req == i].reset_index(drop=True)) for i, kb in enumerate(cutoffs)}

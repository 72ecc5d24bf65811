"""Feature specs: which as-of indicators to compute, validated before anything runs.

A spec (YAML) names event *sources* (an event type, optionally narrowed by a category
prefix), a grid of *aggregates* (source x window x metric), *peer* comparisons of some of
those columns within the officer's unit or rank at the as-of date, and *attributes*
(tenure, age, current unit and rank). Every generated column has a name, a family and a
plain-language description template that explanations fill in.

Column names::

    {source}_{window}_{metric}          complaint_1y_count, use_of_force_1y_per100_arrest
    {base}_{peer}_{stat}                use_of_force_180d_count_unit_ratio
    tenure_years, age_years, unit, rank attributes at the as-of date

Metrics (all obey knowledge time: an event exists at t only if ``reported_date < t``):

- ``count``: events of the source with ``t - window <= reported_date < t`` (windows are
  on ``reported_date``, the date the agency learned of the event, so that a late report
  never changes a past feature).
- ``sustained``: those of them whose finding is ``sustained`` with ``finding_date < t``.
- ``not_sustained``, ``unfounded``, ``exonerated``: those of them whose finding is that one
  with ``finding_date < t`` (like ``sustained``: a finding counts only once it is known).
- ``share_sustained``: sustained / those with a finding known at t (any finding other than
  ``pending`` with ``finding_date < t``); null when none has a known finding.
- ``days_since``: days from the latest such event's ``reported_date`` to t; null when the
  window holds none.
- ``per100_<activity>``: 100 x count / count of the ``<activity>`` source in the same
  window; null when the officer has no activity events there (so always null for an agency
  without them).
- ``trend``: count in the window minus count in the window of the same length before it
  (``complaint_1y_trend``: last year minus the year before).

Peer statistics (per as-of date, among officers of the cohort holding the same unit or
rank at t; the officer itself is included in the group, nothing is excluded):

- ``ratio``: value / group mean; null when the mean is 0.
- ``z``: (value - group mean) / group population standard deviation; 0 when that is 0.
- ``pct``: 100 x percent_rank, i.e. the share of the group with a strictly smaller value
  (0 for the lowest and for ties at the bottom; 100 for the single highest).
- ``mean``: the group mean itself (unit context: an officer with no events of his own in
  a unit with many is exposed too, which the three officer-relative stats cannot show).
All four are null when the officer has no such assignment at t.

Network indicators (``networks``: officers tied by being named on the same case):

- Two officers are *tied* through a source (``ties: complaint``) when events of that source
  of both carry the same non-empty ``case_id`` (co-accused on a complaint; co-involved in a
  use-of-force report when the agency gives those a shared case id). On a case, an officer
  is named from the earliest ``reported_date`` of his events of the source on it; the tie
  exists from the **later** of the two officers' such dates (``tie date``), so at t a tie
  exists only when both were reported on the case before t. The peer must be an officer
  known at t (``appointed_date < t``; separated peers keep counting).
- A tie is in window w at t when its latest tie date before t is ``>= t - w``.
- ``{ties}_network_{w}_count``: the number of distinct officers tied to the officer in w.
- ``{ties}_network_{w}_{history}_{stat}`` for each ``history`` (a ``count`` or
  ``sustained`` aggregate column of the spec, computed for each tied officer *as of t*:
  only his events reported before t, only findings dated before t), over the tied officers
  in w: ``mean``, ``max``, ``share`` (the share of them whose history is above 0, e.g. who
  had a sustained finding) and ``with`` (how many of them). ``mean``, ``max`` and ``share``
  are null when the officer has no tie in w; ``count`` and ``with`` are then 0.

``race`` and ``sex`` are never features: the validator refuses them anywhere in a spec.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ews.contract import PROTECTED_ATTRIBUTES
from features.durations import CAREER, parse_duration, parse_window, window_phrase

if TYPE_CHECKING:
    import pandas as pd

FINDING_METRICS = ("not_sustained", "unfounded", "exonerated")  # counts by known finding
SIMPLE_METRICS = ("count", "sustained", *FINDING_METRICS, "share_sustained", "days_since", "trend")
RATE_PREFIX = "per100_"
PEER_STATS = ("ratio", "z", "pct", "mean")
PEER_BASE_METRICS = ("count", "sustained", "trend")  # never null, so ranks agree everywhere
NetworkStat = Literal["mean", "max", "share", "with"]
DEFAULT_NETWORK_STATS: tuple[NetworkStat, ...] = ("mean", "max", "share")
NETWORK_HISTORY_METRICS = ("count", "sustained")
NUMERIC_ATTRIBUTES = ("tenure_years", "age_years")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SpecError(ValueError):
    """A feature, cohort or label spec that breaks a rule; the message names each problem."""


def _refuse_protected(value: str, where: str) -> str:
    if value.lower() in PROTECTED_ATTRIBUTES:
        raise ValueError(
            f"{where} {value!r} is a protected attribute: race and sex are never features "
            "(they serve the bias audit only)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_windows(v: list[str]) -> list[str]:
    for w in v:
        d = parse_window(w)
        if d is not None and d.token != w:
            raise ValueError(f"window {w!r}: write it as {d.token!r}")
    return v


class SourceSpec(_Strict):
    """One kind of event: an event type, optionally narrowed to a concept.

    ``category_group`` names the concept (one of ``ews.contract.CATEGORY_GROUPS``, e.g.
    ``excessive_force``): an event is of the source when its ``category_group`` is that
    group. ``category_prefix`` selects by the agency's own codes (``"05"``: Chicago's
    excessive force); with both, the prefix decides only for events without a group (old
    packages, written before the column existed)."""

    event_type: str
    category_group: str | None = None
    category_prefix: str | None = None
    label: str | None = Field(None, description="plural noun for descriptions")
    singular: str | None = Field(None, description="singular noun for descriptions")

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"event_type {v!r} must be a lower_snake_case word")
        return _refuse_protected(v, "event_type")

    @field_validator("category_group")
    @classmethod
    def _category_group(cls, v: str | None) -> str | None:
        from ews.contract import CATEGORY_GROUPS

        if v is not None and v not in CATEGORY_GROUPS:
            raise ValueError(
                f"category_group {v!r}: use one of {', '.join(CATEGORY_GROUPS)} (docs/contract.md)"
            )
        return v

    def concept(self) -> str:
        """How the source selects its events, in words."""
        parts = []
        if self.category_group:
            parts.append(f"category_group {self.category_group!r}")
        if self.category_prefix:
            where = " where the package gives no group" if self.category_group else ""
            parts.append(f"a category starting with {self.category_prefix!r}{where}")
        return f"{self.event_type} events with " + " or ".join(parts) if parts else ""


class AggregateSpec(_Strict):
    """A grid: every source x every window x every metric."""

    sources: list[str] = Field(min_length=1)
    windows: list[str] = Field(default_factory=lambda: [CAREER], min_length=1)
    metrics: list[str] = Field(min_length=1)

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        return _check_windows(v)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in SIMPLE_METRICS and not m.startswith(RATE_PREFIX):
                raise ValueError(
                    f"unknown metric {m!r}: use one of {', '.join(SIMPLE_METRICS)} "
                    f"or {RATE_PREFIX}<activity source>"
                )
        return v


class PeerSpec(_Strict):
    """Compare columns with the officer's peers (same unit or rank at the as-of date)."""

    columns: list[str] = Field(min_length=1)
    by: list[str] = Field(min_length=1)
    stats: list[Literal["ratio", "z", "pct", "mean"]] = Field(min_length=1)

    @field_validator("by")
    @classmethod
    def _by(cls, v: list[str]) -> list[str]:
        for kind in v:
            _refuse_protected(kind, "peer group")
            if not _NAME.match(kind):
                raise ValueError(f"peer group {kind!r} must be an assignment kind (lower_snake)")
        return v


class NetworkSpec(_Strict):
    """Officers tied by a shared ``case_id`` on events of one source (see the module
    docstring): how many in each window, and their histories as of the as-of date."""

    ties: str
    windows: list[str] = Field(default_factory=lambda: [CAREER], min_length=1)
    histories: list[str] = Field(default_factory=list)
    stats: list[NetworkStat] = Field(default_factory=lambda: list(DEFAULT_NETWORK_STATS))
    label: str = Field("co-accused", description="who the tied officers are, in words")

    @field_validator("windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        return _check_windows(v)


class FeatureSpec(_Strict):
    """A validated feature spec (see the module docstring for every rule)."""

    name: str = "custom"
    description: str = ""
    sources: dict[str, SourceSpec] = Field(min_length=1)
    aggregates: list[AggregateSpec] = Field(default_factory=list)
    peers: list[PeerSpec] = Field(default_factory=list)
    networks: list[NetworkSpec] = Field(default_factory=list)
    attributes: list[str] = Field(default_factory=list)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in v:
            _refuse_protected(name, "source")
            if not _NAME.match(name):
                raise ValueError(f"source name {name!r} must be lower_snake_case")
        return v

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: list[str]) -> list[str]:
        for a in v:
            _refuse_protected(a, "attribute")
            if not _NAME.match(a):
                raise ValueError(
                    f"attribute {a!r} must be tenure_years, age_years or an assignment kind"
                )
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> FeatureSpec:
        problems: list[str] = []
        for i, agg in enumerate(self.aggregates):
            for s in agg.sources:
                if s not in self.sources:
                    problems.append(f"aggregates[{i}]: unknown source {s!r}")
            for m in agg.metrics:
                if m.startswith(RATE_PREFIX) and m[len(RATE_PREFIX) :] not in self.sources:
                    problems.append(
                        f"aggregates[{i}]: metric {m!r} needs a source named "
                        f"{m[len(RATE_PREFIX) :]!r}"
                    )
                if m == "trend" and CAREER in agg.windows:
                    problems.append(f"aggregates[{i}]: trend needs a finite window, not career")
        for i, net in enumerate(self.networks):
            if net.ties not in self.sources:
                problems.append(f"networks[{i}]: unknown source {net.ties!r}")
        if problems:
            raise ValueError("; ".join(problems))
        try:
            self._column_list()
        except SpecError as e:
            raise ValueError(str(e)) from None
        return self

    # ------------------------------------------------------------------ derived
    @cached_property
    def columns(self) -> list[ColumnInfo]:
        """Every generated column, in output order (attributes, aggregates, peers)."""
        return self._column_list()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @cached_property
    def hash(self) -> str:
        """Content hash of the validated spec (12 hex digits): names a feature set."""
        dumped = self.model_dump(mode="json")
        for src in dumped.get("sources", {}).values():  # a spec without groups keeps its hash
            if src.get("category_group") is None:
                src.pop("category_group", None)
        payload = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def peer_kinds(self) -> list[str]:
        """Assignment kinds needed at the as-of date (attributes and peer groups)."""
        kinds = [a for a in self.attributes if a not in NUMERIC_ATTRIBUTES]
        for p in self.peers:
            kinds += [k for k in p.by if k not in kinds]
        return kinds

    def network_columns(self, i: int) -> list[ColumnInfo]:
        """The columns of ``networks[i]``, in output order."""
        by_name = {c.name: c for c in self.columns if c.family != "network"}
        return self._network_columns(i, self.networks[i], by_name)

    def describe(self) -> pd.DataFrame:
        """One row per column: name, family, description template and its parts."""
        import pandas as pd

        return pd.DataFrame([c.__dict__ for c in self.columns])

    def _label(self, source: str) -> tuple[str, str]:
        s = self.sources[source]
        plural = s.label or source.replace("_", " ") + " events"
        singular = s.singular or (plural[:-1] if plural.endswith("s") else plural)
        return plural, singular

    def _column_list(self) -> list[ColumnInfo]:
        cols: list[ColumnInfo] = []
        for a in self.attributes:
            if a == "tenure_years":
                cols.append(_col(a, "attribute", "{value:.1f} years of service", dtype="float"))
            elif a == "age_years":
                cols.append(_col(a, "attribute", "{value:.0f} years old", dtype="float"))
            else:
                cols.append(_col(a, "attribute", f"{a.replace('_', ' ')} {{value}}", dtype="str"))
        for agg in self.aggregates:
            for s in agg.sources:
                plural, singular = self._label(s)
                for w in agg.windows:
                    wp = window_phrase(w)
                    for m in agg.metrics:
                        name = f"{s}_{w}_{m}"
                        if m == "count":
                            t, fam, dtype = f"{{value:.0f}} {plural} in {wp}", "count", "int"
                        elif m == "sustained":
                            t, fam, dtype = (
                                f"{{value:.0f}} sustained {plural} in {wp}",
                                "sustained",
                                "int",
                            )
                        elif m in FINDING_METRICS:
                            t = f"{{value:.0f}} {plural} in {wp} found {m.replace('_', ' ')}"
                            fam, dtype = "finding", "int"
                        elif m == "share_sustained":
                            t = f"{{value:.0%}} of the {plural} with a finding in {wp} sustained"
                            fam, dtype = "share_sustained", "float"
                        elif m == "days_since":
                            t = f"{{value:.0f}} days since the last {singular}"
                            if w != CAREER:
                                t += f" (within {wp})"
                            fam, dtype = "days_since", "float"
                        elif m == "trend":
                            d = parse_duration(w)
                            t = (
                                f"{{value:+.0f}} {plural} in {wp} compared with the "
                                f"{d.period()} before"
                            )
                            fam, dtype = "trend", "int"
                        else:
                            act_plural, _ = self._label(m[len(RATE_PREFIX) :])
                            t = f"{{value:.1f}} {plural} per 100 {act_plural} in {wp}"
                            fam, dtype = "rate", "float"
                        cols.append(_col(name, fam, t, source=s, window=w, metric=m, dtype=dtype))
        by_name = {c.name: c for c in cols}
        for i, net in enumerate(self.networks):
            cols += self._network_columns(i, net, by_name)
        for i, p in enumerate(self.peers):
            for base in p.columns:
                b = by_name.get(base)
                if b is None or b.family in ("peer", "network"):
                    raise SpecError(f"peers[{i}]: {base!r} is not an aggregate column of the spec")
                if b.metric not in PEER_BASE_METRICS:
                    raise SpecError(
                        f"peers[{i}]: {base!r}: peer statistics are defined on "
                        f"{', '.join(PEER_BASE_METRICS)} columns only"
                    )
                base_text = b.description_template.replace("{value:.0f} ", "").replace(
                    "{value:+.0f} ", "change in "
                )
                for kind in p.by:
                    grp = f"{kind.replace('_', ' ')} {{{kind}}}"
                    for stat in p.stats:
                        if stat == "ratio":
                            t = f"{base_text}: {{value:.1f}} times the average of {grp}"
                        elif stat == "z":
                            t = (
                                f"{base_text}: {{value:+.1f}} standard deviations "
                                f"from the mean of {grp}"
                            )
                        elif stat == "mean":
                            t = f"{base_text}: {{value:.1f}} on average in {grp}"
                        else:
                            t = (
                                f"{base_text}: higher than {{value:.0f}}% of the other "
                                f"officers of {grp}"
                            )
                        cols.append(
                            _col(
                                f"{base}_{kind}_{stat}",
                                "peer",
                                t,
                                source=b.source,
                                window=b.window,
                                metric=b.metric,
                                peer=kind,
                                stat=stat,
                                base=base,
                                dtype="float",
                            )
                        )
        seen: set[str] = set()
        dups = [c.name for c in cols if c.name in seen or seen.add(c.name)]  # type: ignore[func-returns-value]
        if dups:
            raise SpecError(f"duplicate column names: {', '.join(sorted(set(dups)))}")
        return cols

    def _network_columns(
        self, i: int, net: NetworkSpec, by_name: dict[str, ColumnInfo]
    ) -> list[ColumnInfo]:
        who = net.label
        cols: list[ColumnInfo] = []
        hist: list[ColumnInfo] = []
        for h in net.histories:
            b = by_name.get(h)
            if b is None or b.family in ("network", "peer", "attribute"):
                raise SpecError(f"networks[{i}]: {h!r} is not an aggregate column of the spec")
            if b.metric not in NETWORK_HISTORY_METRICS:
                raise SpecError(
                    f"networks[{i}]: {h!r}: network histories are "
                    f"{' or '.join(NETWORK_HISTORY_METRICS)} columns"
                )
            hist.append(b)
        for w in net.windows:
            wp = "so far" if w == CAREER else f"in {window_phrase(w)}"
            count = f"{net.ties}_network_{w}_count"
            common = {"source": net.ties, "window": w}
            cols.append(_col(count, "network", f"{{value:.0f}} {who} {wp}", dtype="int", **common))
            for b in hist:
                assert b.source is not None and b.window is not None
                plural, singular = self._label(b.source)
                when = "" if b.window == CAREER else f" in {window_phrase(b.window)}"
                if b.metric == "sustained":
                    noun = f"sustained {plural}"
                    had = (
                        "a sustained finding"
                        if self.sources[b.source].category_prefix is None
                        and self.sources[b.source].category_group is None
                        else f"a sustained {singular}"
                    )
                else:
                    noun, had = plural, f"at least one {singular}"
                of = f"of the officer's {{{count}:.0f}} {who} {wp}"
                for stat in net.stats:
                    if stat == "mean":
                        t = f"the officer's {who} {wp} had {{value:.1f}} {noun}{when} on average"
                        dtype = "float"
                    elif stat == "max":
                        t = f"one of the officer's {who} {wp} had {{value:.0f}} {noun}{when}"
                        dtype = "float"
                    elif stat == "share":
                        t = f"{{value*{count}:.0f}} {of} had {had}{when}"
                        dtype = "float"
                    else:
                        t = f"{{value:.0f}} {of} had {had}{when}"
                        dtype = "int"
                    cols.append(
                        _col(
                            f"{count.removesuffix('_count')}_{b.name}_{stat}",
                            "network",
                            t,
                            stat=stat,
                            base=b.name,
                            dtype=dtype,
                            **common,
                        )
                    )
        return cols


@dataclass(frozen=True)
class ColumnInfo:
    """One generated column. ``description_template`` is a ``str.format`` template with
    ``{value}`` (the column's value) and, for peer columns, ``{unit}`` / ``{rank}`` (the
    officer's group at the as-of date)."""

    name: str
    # attribute|count|sustained|finding|share_sustained|days_since|rate|trend|peer|network
    family: str
    description_template: str
    source: str | None = None
    window: str | None = None
    metric: str | None = None
    peer: str | None = None
    stat: str | None = None
    base: str | None = None
    dtype: str = "float"  # int | float | str


def _col(name: str, family: str, template: str, **kw: Any) -> ColumnInfo:
    return ColumnInfo(name=name, family=family, description_template=template, **kw)


def _format_errors(where: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}")
    return "\n".join(lines)


def spec_from_dict(data: dict[str, Any], where: str = "spec") -> FeatureSpec:
    """Validate a spec given as a dict; raise SpecError naming every problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a feature spec is a mapping, got {type(data).__name__}")
    try:
        return FeatureSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_format_errors(where, e)) from None


def load_spec(path: str | Path) -> FeatureSpec:
    """Read and validate a YAML feature spec before anything runs."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: no such spec file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML: {e}") from None
    return spec_from_dict(data, where=str(p))


@lru_cache(maxsize=1)
def default_spec() -> FeatureSpec:
    """The project's default spec (features/default_spec.yaml, shipped as package data)."""
    import yaml

    text = resources.files("features").joinpath("default_spec.yaml").read_text()
    return spec_from_dict(yaml.safe_load(text), where="features/default_spec.yaml")

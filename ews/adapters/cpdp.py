"""Chicago CPDP (Citizens Police Data Project, 2018 release) -> agency data package.

Reads the five files of the trimmed CPDP release (``cpd_officers``, ``cpd_allegations``,
``cpd_trr``, ``cpd_unit_history``, ``cpd_rank_year``, each ``.csv.gz``) and writes a contract
package (normalized Parquet: ``officers``, ``events``, ``assignments``). Every row that is
dropped is counted with its reason, every value that is repaired is counted too: see
:class:`CpdpReport`.

Mapping (decisions marked *decided here*):

officers (``cpd_officers``)
    ``officer_id`` = UID (floats such as ``130469.0`` become ``"130469"`` in every file),
    ``appointed_date``, ``separation_date`` = ``resignation_date``, ``birth_year`` (int),
    ``sex`` = gender, ``race``. Officers without an appointed date are dropped with all their
    events and assignments (the contract requires the date; the knowledge-time rule needs it).
    A resignation dated before the appointment is blanked (*decided here*: the officer is
    kept, the impossible date is not). ``current_rank`` and ``current_unit`` are dropped on
    purpose: they describe the officer as of 2018, so any feature computed for an earlier
    as-of date that used them would know the future (leakage).

events: ``complaint`` (``cpd_allegations``, one row per officer-allegation)
    ``event_id`` = ``cr-<cr_id>-<uid>`` (a ``-2``, ``-3`` ... suffix if the same officer were
    listed twice on one case); ``case_id`` = cr_id; ``reported_date`` = complaint_date;
    ``event_date`` = incident_date when it is plausible, that is not after the complaint date
    and not before 1950-01-01 (some incident dates go back to 1919), else complaint_date
    (*decided here*); ``category`` = ``complaint_code + " " + complaint_category`` (so a
    prefix ``05`` selects excessive force; empty when the code is empty);
    ``category_group`` = the code's concept (:data:`CODE_GROUPS`: ``05`` is
    ``excessive_force``); ``finding`` from
    final_finding: SU sustained, NS not_sustained, UN unfounded, EX exonerated,
    NAF/NC/DIS no_finding, blank pending; ``finding_date`` = closed_date, the day the finding
    became known. A finding without a closed date cannot be placed in time, so it becomes
    ``pending`` (and its outcome is blanked, the outcome being known only with the finding).
    A case closed before it was filed gets ``finding_date`` = ``reported_date``. A pending
    finding never carries a date. ``outcome`` = final_outcome.

events: ``use_of_force`` (``cpd_trr``, one row per officer and report)
    ``event_id`` = ``trr-<trr_id>``; ``event_date`` = ``reported_date`` = trr_date; extra
    columns ``firearm_used``, ``taser``, ``injured`` as ``"1"``/``"0"``. Rows without UID
    (detention aides) are dropped.

assignments: ``unit`` (``cpd_unit_history``)
    value = unit as a string (``"12"``, not ``"12.0"``); the end date 2018-06-01 is the
    source's placeholder for "still assigned" and becomes empty. Overlapping spells and gaps
    between spells are kept as they are and counted in the report.

assignments: ``rank`` (``cpd_rank_year``, one row per officer and year 2002-2017)
    Consecutive years with the same rank collapse into one spell from Jan 1 of the first
    year to Dec 31 of the last year; a missing year breaks the spell (the file lacks some
    active officers, and the benchmark's cohort is "holds a rank at t", mirroring the
    README's "has a rank row for year(t)"). A spell followed at once by another rank (a
    promotion) ends on the first day of the next one, the handover day: at an as-of date t =
    Jan 1 the promotion is not yet known (it starts on t, and only assignments starting before
    t are known), so the officer still holds the old rank at t instead of holding none. The
    last spell of an officer still listed in the file's final year gets an empty end date
    (still so). Caveat: a year's rank can reflect a promotion later that year, so a spell that
    starts on Jan 1 may be known a little early.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FILES = {
    "officers": "cpd_officers",
    "allegations": "cpd_allegations",
    "trr": "cpd_trr",
    "unit_history": "cpd_unit_history",
    "rank_year": "cpd_rank_year",
}
COLUMNS_IN = {
    "officers": ["UID", "birth_year", "race", "gender", "appointed_date", "resignation_date"],
    "allegations": [
        "UID",
        "cr_id",
        "complaint_date",
        "incident_date",
        "closed_date",
        "complaint_code",
        "complaint_category",
        "final_finding",
        "final_outcome",
    ],
    "trr": ["trr_id", "UID", "trr_date", "firearm_used", "taser", "injured"],
    "unit_history": ["UID", "unit", "unit_start_date", "unit_end_date"],
    "rank_year": ["UID", "year", "cleaned_rank"],
}
FINDING_MAP = {
    "SU": "sustained",
    "NS": "not_sustained",
    "UN": "unfounded",
    "EX": "exonerated",
    "NAF": "no_finding",
    "NC": "no_finding",
    "DIS": "no_finding",
}
UNIT_END_PLACEHOLDER = "2018-06-01"
EARLIEST_PLAUSIBLE_INCIDENT = "1950-01-01"
_YES = {"1", "1.0", "yes", "y", "true", "t"}
_NO = {"0", "0.0", "no", "n", "false", "f"}


@dataclass
class Drop:
    """Rows of one source file left out of the package, with the reason."""

    file: str
    reason: str
    count: int


@dataclass
class CpdpReport:
    """What :func:`convert_cpdp` read, wrote, dropped and repaired.

    ``rows_in``: data rows per source file; ``rows_out``: rows per package table (and per
    event type / assignment kind, keys like ``events:complaint``); ``drops``: rows left out,
    with the reason; ``fixes``: values repaired or reinterpreted (rows kept), same shape.
    """

    source: Path
    out: Path
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)
    fixes: list[Drop] = field(default_factory=list)
    seconds: float = 0.0

    def drop(self, file: str, reason: str, count: int) -> None:
        if count:
            self.drops.append(Drop(file, reason, int(count)))

    def fix(self, file: str, reason: str, count: int) -> None:
        if count:
            self.fixes.append(Drop(file, reason, int(count)))

    def dropped(self, file: str | None = None) -> int:
        """Total rows dropped (from one source file, or from all)."""
        return sum(d.count for d in self.drops if file is None or d.file == file)

    def summary(self) -> str:
        """A plain-text account: rows in, rows out, drops and fixes with their reasons."""
        lines = [f"CPDP {self.source} -> {self.out} ({self.seconds:.1f} s)", "rows in:"]
        lines += [f"  {FILES[k]}.csv.gz: {v:,}" for k, v in self.rows_in.items()]
        lines.append("rows out:")
        lines += [f"  {k}: {v:,}" for k, v in self.rows_out.items()]
        lines.append(f"dropped ({sum(d.count for d in self.drops):,} rows):")
        lines += [f"  {d.file}: {d.count:,} {d.reason}" for d in self.drops] or ["  none"]
        lines.append("repaired or reinterpreted (rows kept):")
        lines += [f"  {d.file}: {d.count:,} {d.reason}" for d in self.fixes] or ["  none"]
        return "\n".join(lines)


def _read(src: Path, key: str) -> pd.DataFrame:
    """One source file as strings ('' for missing), checked for the columns we need."""
    import pandas as pd

    from ews.contract import ContractError

    path = src / f"{FILES[key]}.csv.gz"
    if not path.is_file():
        alt = src / f"{FILES[key]}.csv"
        if not alt.is_file():
            raise ContractError(f"{src}: missing CPDP file {path.name}")
        path = alt
    df = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
    missing = [c for c in COLUMNS_IN[key] if c not in df.columns]
    if missing:
        raise ContractError(f"{path}: missing column(s) {', '.join(missing)}")
    return df.fillna("")


def _uid(s: pd.Series) -> pd.Series:
    """UIDs as the strings the officers file uses: '130469.0' -> '130469'; '' stays ''."""
    return s.str.strip().str.replace(r"\.0+$", "", regex=True)


def _date(s: pd.Series) -> pd.Series:
    """ISO date strings to datetime64 (NaT for empty or unparseable)."""
    import pandas as pd

    return pd.to_datetime(s.str.strip().str.slice(0, 10), format="%Y-%m-%d", errors="coerce")


def _flag(s: pd.Series) -> pd.Series:
    """Yes/No, 1/0 style flags as '1'/'0' strings (anything else: missing)."""
    import pandas as pd

    low = s.str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="string")
    out[low.isin(_YES)] = "1"
    out[low.isin(_NO)] = "0"
    return out


def _officers(src: Path, report: CpdpReport) -> pd.DataFrame:
    import pandas as pd

    raw = _read(src, "officers")
    report.rows_in["officers"] = len(raw)
    f = FILES["officers"]
    df = pd.DataFrame(
        {
            "officer_id": _uid(raw["UID"]),
            "appointed_date": _date(raw["appointed_date"]),
            "separation_date": _date(raw["resignation_date"]),
            "birth_year": pd.to_numeric(raw["birth_year"], errors="coerce").round().astype("Int32"),
            "sex": raw["gender"].str.strip(),
            "race": raw["race"].str.strip(),
        }
    )
    keep = df["officer_id"] != ""
    report.drop(f, "without UID", (~keep).sum())
    df = df[keep]
    dup = df["officer_id"].duplicated(keep="first")
    report.drop(f, "duplicate UID (first row kept)", dup.sum())
    df = df[~dup]
    no_appt = df["appointed_date"].isna()
    report.drop(
        f, "without appointed_date (their events and assignments dropped too)", no_appt.sum()
    )
    df = df[~no_appt].copy()
    bad_sep = df["separation_date"] < df["appointed_date"]
    report.fix(
        f, "resignation_date before appointed_date: separation_date left empty", bad_sep.sum()
    )
    df.loc[bad_sep, "separation_date"] = pd.NaT
    bad_by = df["birth_year"].notna() & ((df["birth_year"] < 1900) | (df["birth_year"] > 2100))
    report.fix(f, "birth_year outside 1900..2100 left empty", bad_by.sum())
    df.loc[bad_by, "birth_year"] = pd.NA
    return df.reset_index(drop=True)


def _known(df: pd.DataFrame, officers: pd.DataFrame, file: str, report: CpdpReport) -> pd.DataFrame:
    """Keep rows whose officer is in the package; count the rest by reason."""
    empty = df["officer_id"] == ""
    report.drop(file, "without UID", empty.sum())
    df = df[~empty]
    known = df["officer_id"].isin(officers["officer_id"])
    report.drop(
        file, "officer dropped or unknown (no appointed_date in cpd_officers)", (~known).sum()
    )
    return df[known]


def _complaints(src: Path, officers: pd.DataFrame, report: CpdpReport) -> pd.DataFrame:
    import pandas as pd

    raw = _read(src, "allegations")
    report.rows_in["allegations"] = len(raw)
    f = FILES["allegations"]
    uid = _uid(raw["UID"])
    cr = raw["cr_id"].str.strip()
    reported = _date(raw["complaint_date"])
    incident = _date(raw["incident_date"])
    closed = _date(raw["closed_date"])
    code = raw["complaint_code"].str.strip()
    cat = raw["complaint_category"].str.strip()
    df = pd.DataFrame(
        {
            "officer_id": uid,
            "event_type": "complaint",
            "reported_date": reported,
            "incident": incident,
            "case_id": cr,
            "category": (code + " " + cat).str.strip().where(code != "", ""),
            "code": raw["final_finding"].str.strip().str.upper(),
            "closed": closed,
            "outcome": raw["final_outcome"].str.strip(),
        }
    )
    no_cr = df["case_id"] == ""
    report.drop(f, "without cr_id", no_cr.sum())
    df = df[~no_cr]
    no_date = df["reported_date"].isna()
    report.drop(f, "without a valid complaint_date", no_date.sum())
    df = df[~no_date]
    df = _known(df, officers, f, report).copy()

    plausible = (
        df["incident"].notna()
        & (df["incident"] <= df["reported_date"])
        & (df["incident"] >= pd.Timestamp(EARLIEST_PLAUSIBLE_INCIDENT))
    )
    report.fix(
        f,
        "incident_date empty, after complaint_date or before 1950: event_date = complaint_date",
        (~plausible).sum(),
    )
    df["event_date"] = df["incident"].where(plausible, df["reported_date"])

    unknown = ~df["code"].isin([*FINDING_MAP, ""])
    report.fix(f, "unknown final_finding code: treated as pending", unknown.sum())
    df["finding"] = df["code"].map(FINDING_MAP).fillna("pending")
    blank = df["code"] == ""
    report.fix(
        f,
        "blank final_finding: pending (closed_date and outcome ignored)",
        (blank & df["closed"].notna()).sum(),
    )
    undated = (df["finding"] != "pending") & df["closed"].isna()
    report.fix(f, "final_finding without closed_date: pending, outcome left empty", undated.sum())
    df.loc[undated, "finding"] = "pending"
    pending = df["finding"] == "pending"
    df["finding_date"] = df["closed"].where(~pending)
    df.loc[pending, "outcome"] = ""
    early = df["finding_date"] < df["reported_date"]
    report.fix(f, "closed_date before complaint_date: finding_date = complaint_date", early.sum())
    df.loc[early, "finding_date"] = df.loc[early, "reported_date"]

    base = "cr-" + df["case_id"] + "-" + df["officer_id"]
    n = df.groupby(base, sort=False).cumcount()
    report.fix(f, "same officer listed twice on one case: event_id suffixed", (n > 0).sum())
    df["event_id"] = base.where(n == 0, base + "-" + (n + 1).astype(str))
    df["category_group"] = category_group(df["category"])
    return df[
        [
            "event_id",
            "officer_id",
            "event_type",
            "event_date",
            "reported_date",
            "case_id",
            "category",
            "finding",
            "finding_date",
            "outcome",
            "category_group",
        ]
    ]


# The concept of each Chicago complaint code (its first two characters), as
# events.category_group (docs/contract.md). Only the 05 codes are excessive force, exactly
# the events the default spec's "05" prefix selected before the column existed; codes not
# listed (S0-S2, 11, 14, 16-21) are "other".
CODE_GROUPS = {
    "01": "verbal_abuse",
    "02": "off_duty_conduct",
    "03": "illegal_search_or_arrest",
    "04": "procedure",
    "05": "excessive_force",
    "06": "criminal_misconduct",
    "07": "procedure",
    "08": "criminal_misconduct",
    "09": "off_duty_conduct",
    "10": "procedure",
    "12": "procedure",
    "15": "criminal_misconduct",
}


def category_group(category: pd.Series) -> pd.Series:
    """events.category_group of CPDP complaint categories: by the code's first two
    characters (:data:`CODE_GROUPS`), ``other`` for another code, empty without one."""
    cat = category.fillna("").astype(str)
    group = cat.str[:2].map(CODE_GROUPS).fillna("other")
    return group.where(cat != "", "")


def _use_of_force(src: Path, officers: pd.DataFrame, report: CpdpReport) -> pd.DataFrame:
    import pandas as pd

    raw = _read(src, "trr")
    report.rows_in["trr"] = len(raw)
    f = FILES["trr"]
    day = _date(raw["trr_date"])
    df = pd.DataFrame(
        {
            "event_id": "trr-" + raw["trr_id"].str.strip().str.replace(r"\.0+$", "", regex=True),
            "officer_id": _uid(raw["UID"]),
            "event_type": "use_of_force",
            "event_date": day,
            "reported_date": day,
            "firearm_used": _flag(raw["firearm_used"]),
            "taser": _flag(raw["taser"]),
            "injured": _flag(raw["injured"]),
        }
    )
    bad = (df["event_id"] == "trr-") | df["event_date"].isna()
    report.drop(f, "without trr_id or a valid trr_date", bad.sum())
    df = df[~bad]
    df = _known(df, officers, f, report)
    dup = df["event_id"].duplicated(keep="first")
    report.drop(f, "duplicate trr_id for one officer report (first kept)", dup.sum())
    return df[~dup]


def _units(src: Path, officers: pd.DataFrame, report: CpdpReport) -> pd.DataFrame:
    import pandas as pd

    raw = _read(src, "unit_history")
    report.rows_in["unit_history"] = len(raw)
    f = FILES["unit_history"]
    end_raw = raw["unit_end_date"].str.strip()
    df = pd.DataFrame(
        {
            "officer_id": _uid(raw["UID"]),
            "kind": "unit",
            "value": raw["unit"].str.strip().str.replace(r"\.0+$", "", regex=True),
            "start_date": _date(raw["unit_start_date"]),
            "end_date": _date(end_raw).where(end_raw != UNIT_END_PLACEHOLDER),
        }
    )
    report.fix(
        f,
        f"end date {UNIT_END_PLACEHOLDER} (placeholder for still assigned) left empty",
        (end_raw == UNIT_END_PLACEHOLDER).sum(),
    )
    bad = (df["value"] == "") | df["start_date"].isna()
    report.drop(f, "without unit or a valid unit_start_date", bad.sum())
    df = df[~bad]
    backwards = df["end_date"] < df["start_date"]
    report.drop(f, "unit_end_date before unit_start_date", backwards.sum())
    df = _known(df[~backwards], officers, f, report)
    df = df.sort_values(["officer_id", "start_date"], kind="stable").reset_index(drop=True)
    same = df["officer_id"].eq(df["officer_id"].shift())
    prev_end = df["end_date"].shift()
    overlap = same & (prev_end.isna() | (df["start_date"] <= prev_end))
    gap = same & (df["start_date"] > prev_end + pd.Timedelta(days=1))
    report.fix(f, "spell starts before the previous one ended (overlap, kept)", overlap.sum())
    report.fix(f, "spell leaves a gap after the previous one (kept)", gap.sum())
    return df


def _ranks(src: Path, officers: pd.DataFrame, report: CpdpReport) -> pd.DataFrame:
    import pandas as pd

    raw = _read(src, "rank_year")
    report.rows_in["rank_year"] = len(raw)
    f = FILES["rank_year"]
    df = pd.DataFrame(
        {
            "officer_id": _uid(raw["UID"]),
            "year": pd.to_numeric(raw["year"], errors="coerce"),
            "value": raw["cleaned_rank"].str.strip(),
        }
    )
    bad = df["year"].isna() | (df["value"] == "")
    report.drop(f, "without a valid year or rank", bad.sum())
    df = df[~bad]
    df = _known(df, officers, f, report).copy()
    df["year"] = df["year"].round().astype(int)
    df = df.sort_values(["officer_id", "year"], kind="stable")
    dup = df.duplicated(["officer_id", "year"], keep="first")
    report.drop(f, "second rank row for the same officer and year (first kept)", int(dup.sum()))
    df = df[~dup].reset_index(drop=True)
    last_year = int(df["year"].max()) if len(df) else 0
    same_off = df["officer_id"].eq(df["officer_id"].shift())
    new_spell = ~(
        same_off & df["value"].eq(df["value"].shift()) & df["year"].eq(df["year"].shift() + 1)
    )
    df["spell"] = new_spell.cumsum()
    spells = df.groupby("spell", sort=False).agg(
        officer_id=("officer_id", "first"),
        value=("value", "first"),
        first=("year", "min"),
        last=("year", "max"),
        years=("year", "size"),
    )
    report.fix(f, "yearly rank rows collapsed into spells", len(df) - len(spells))
    start = pd.to_datetime(spells["first"].astype(str) + "-01-01")
    end = pd.to_datetime(spells["last"].astype(str) + "-12-31")
    is_last = ~spells["officer_id"].eq(spells["officer_id"].shift(-1))
    open_end = is_last & (spells["last"] == last_year)
    handover = ~is_last & spells["first"].shift(-1).eq(spells["last"] + 1)
    end = end.where(~handover, pd.to_datetime((spells["last"] + 1).astype(str) + "-01-01"))
    return pd.DataFrame(
        {
            "officer_id": spells["officer_id"].to_numpy(),
            "kind": "rank",
            "value": spells["value"].to_numpy(),
            "start_date": start.to_numpy(),
            "end_date": end.where(~open_end).to_numpy(),
        }
    )


def convert_cpdp(src: Path, out: Path, progress: bool = False) -> CpdpReport:
    """Convert the CPDP folder ``src`` into a contract package (normalized Parquet) in ``out``.

    Returns the report of rows read, written, dropped and repaired. ``out`` is created if
    needed; existing package files in it are overwritten. Raises :class:`ews.contract.
    ContractError` when a source file or a needed column is missing.
    """
    import time

    import pandas as pd

    from ews.contract import ContractError, write_normalized

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ContractError(
            f"{src}: not a folder (expected the CPDP files, e.g. cpd_officers.csv.gz)"
        )
    t0 = time.perf_counter()
    report = CpdpReport(source=src, out=out)
    steps = [
        ("officers", "reading officers"),
        ("complaints", "mapping allegations to complaints"),
        ("force", "mapping use-of-force reports"),
        ("units", "mapping unit history"),
        ("ranks", "collapsing yearly ranks into spells"),
        ("write", "writing the package"),
    ]
    parts: dict[str, pd.DataFrame] = {}

    def run(key: str) -> None:
        if key == "officers":
            parts["officers"] = _officers(src, report)
        elif key == "complaints":
            parts["complaints"] = _complaints(src, parts["officers"], report)
        elif key == "force":
            parts["force"] = _use_of_force(src, parts["officers"], report)
        elif key == "units":
            parts["units"] = _units(src, parts["officers"], report)
        elif key == "ranks":
            parts["ranks"] = _ranks(src, parts["officers"], report)
        else:
            events = pd.concat([parts["complaints"], parts["force"]], ignore_index=True)
            assignments = pd.concat([parts["units"], parts["ranks"]], ignore_index=True)
            officers = parts["officers"]
            # empty strings become missing values in normalize()
            write_normalized(out, officers, events, assignments)
            report.rows_out["officers"] = len(officers)
            report.rows_out["events"] = len(events)
            for k, v in events["event_type"].value_counts().sort_index().items():
                report.rows_out[f"events:{k}"] = int(v)
            report.rows_out["assignments"] = len(assignments)
            for k, v in assignments["kind"].value_counts().sort_index().items():
                report.rows_out[f"assignments:{k}"] = int(v)

    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("CPDP", total=len(steps))
            for key, label in steps:
                bar.update(task, description=label)
                run(key)
                bar.advance(task)
    else:
        for key, _ in steps:
            run(key)
    report.seconds = time.perf_counter() - t0
    return report

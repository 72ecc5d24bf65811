"""Flags that reach people: `ews notify` plans, delivers and records notices.

Who is told what (every rule reads the as-of day ``today`` it is given):
- ``new_flags``: each active supervisor with an e-mail address, one message listing how many
  flags of their units (the officers' CURRENT units, the scope rule of :mod:`api.scope`) are
  new and were not announced to them yet, and a link to each officer's page. A message names
  officers only: no reason, event, score or rule leaves the system.
- ``reminder``: a flag still ``new`` whose review is due (``scored_at`` + the review window,
  ``EWS_REVIEW_DAYS``) within the agency's ``remind_days``, or an intervention whose due date
  is that close: one reminder per flag to its supervisors.
- ``escalation``: a flag overdue (the rule of :func:`ews.reviews.overdue`) by more than the
  agency's ``escalate_days``: once per flag to each commander who oversees the officer's unit
  (a commander with no unit oversees the whole agency), with the supervisors named.
- ``digest``: once per ISO week, to each reviewer of the agency: per unit the flags raised in
  the last 7 days, reviewed in time, reviewed late, open and overdue (figures only).

Idempotency: a notice is recorded (``notices``, with one ``notice_items`` row per flag it
named, unique per channel, kind, recipient and flag) together with its audit entry in one
transaction, and only after its delivery succeeded. Planning leaves out whatever is
recorded, so a second run sends nothing new; a failed delivery (after the retries with
backoff) records nothing but a ``notify_failed`` audit entry, and is planned again next run.
A crash between a delivery and its record can repeat that one notice (at least once, never
lost).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import smtplib
import ssl
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from ews.audit import append
from ews.db import (
    AGENCY_LEN,
    EMAIL_LEN,
    NAME_LEN,
    AppDatabase,
    Base,
    Flag,
    FlagStatus,
    OfficerUnit,
    ScoringRun,
    User,
    current_actor,
    utcnow,
)

KINDS = ("new_flags", "reminder", "escalation", "digest")
CHANNELS = ("smtp", "webhook")
OVERSEERS = ("supervisor", "commander")
DEFAULT_REMIND_DAYS = 3
DEFAULT_ESCALATE_DAYS = 0
SIGNATURE_HEADER = "X-EWS-Signature"
EMAIL = re.compile(r"^[^@\s<>,;\"']{1,64}@[A-Za-z0-9.-]{1,253}$")


class NotifyError(ValueError):
    """Bad input to notify (exit 2 at the command line)."""


class Notice(Base):
    """One message delivered by ``ews notify``."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    recipient: Mapped[str] = mapped_column(String(200), nullable=False)
    address: Mapped[str | None] = mapped_column(String(EMAIL_LEN), nullable=True)
    dedup_key: Mapped[str] = mapped_column(String(300), nullable=False, unique=True)
    subject: Mapped[str] = mapped_column(String(500), nullable=False)
    officers: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    audit_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class NoticeItem(Base):
    """One flag a notice named: the record that keeps it from being named twice."""

    __tablename__ = "notice_items"
    __table_args__ = (
        UniqueConstraint(
            "channel",
            "kind",
            "recipient",
            "agency",
            "officer_id",
            "as_of_date",
            name="uq_notice_items_once",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), nullable=False)
    channel: Mapped[str] = mapped_column(String(20), nullable=False)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    recipient: Mapped[str] = mapped_column(String(200), nullable=False)
    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), nullable=False)
    officer_id: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    as_of_date: Mapped[dt.date] = mapped_column(Date, nullable=False)


class NotifyPolicy(Base):
    """An agency's reminder and escalation days (absent: the defaults)."""

    __tablename__ = "notify_policy"

    agency: Mapped[str] = mapped_column(String(AGENCY_LEN), primary_key=True)
    remind_days: Mapped[int] = mapped_column(Integer, nullable=False)
    escalate_days: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class NotifySettings(BaseSettings):
    """Delivery settings, from the environment (prefix ``EWS_``).

    ``EWS_SMTP_URL``: ``smtp://user:password@host:port?starttls=1`` (``smtps://`` for TLS from
    the first byte; ``from=ADDR`` sets the sender, default ``EWS_SMTP_FROM``; ``cafile=PATH``
    trusts an agency's own certificate authority besides the system's).
    ``EWS_WEBHOOK_URL`` and its HMAC key ``EWS_WEBHOOK_SECRET`` or ``EWS_WEBHOOK_SECRET_FILE``.
    ``EWS_PUBLIC_URL``: the address of ``ews serve`` that links in messages start with.
    ``EWS_NOTIFY_RETRIES`` and ``EWS_NOTIFY_BACKOFF``: attempts per delivery and the first wait
    (seconds; it doubles after each failed attempt)."""

    model_config = SettingsConfigDict(env_prefix="EWS_", extra="ignore")

    smtp_url: str | None = None
    smtp_from: str = "ews@localhost"
    smtp_timeout: float = 30.0
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_secret_file: Path | None = None
    public_url: str = "http://127.0.0.1:8000"
    notify_retries: int = Field(default=3, ge=1, le=20)
    notify_backoff: float = Field(default=2.0, ge=0)


# ---------------------------------------------------------------- people to notify


def check_email(email: str | None) -> str | None:
    """A plausible single address (no display name, no list), or None."""
    if email is None or email == "":
        return None
    email = email.strip()
    if len(email) > EMAIL_LEN or not EMAIL.match(email):
        raise NotifyError(f"e-mail address {email!r}: write one address, like name@agency.gov")
    return email


def check_units(role: str, agency: str | None, units: list[str]) -> None:
    """Units are 1-200 characters; a commander belongs to one agency (no unit: all of it)."""
    if any(not u or len(u) > NAME_LEN for u in units):
        raise NotifyError("a unit is 1-200 characters")
    if role == "commander" and not agency:
        raise NotifyError("a commander needs an agency (--agency); no --unit: the whole agency")
    if role not in OVERSEERS and units:
        raise NotifyError(f"only supervisors and commanders have units, not a {role}")


def update_user(
    db: AppDatabase,
    username: str,
    email: str | None = None,
    units: list[str] | None = None,
    clear_email: bool = False,
    units_from: str | None = None,
) -> dict[str, Any]:
    """Change a user's e-mail address and/or units (replacing the list), with its audit entry
    in the same transaction. Returns the changes."""
    email = check_email(email)
    with db.write() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotifyError(f"no user {username!r}")
        changes: dict[str, Any] = {}
        if clear_email or email is not None:
            changes["email"] = None if clear_email else email
        if units is not None:
            check_units(user.role, user.agency, units)
            if user.role == "supervisor" and not units:
                raise NotifyError("a supervisor needs at least one unit (--unit)")
            changes["units"] = [str(u) for u in units]
        if not changes:
            raise NotifyError("nothing to change: give --email, --no-email or --unit")
        before = {k: getattr(user, k) for k in changes}
        for k, v in changes.items():
            setattr(user, k, v)
        append(
            s,
            f"cli:{current_actor()}",
            "admin",
            "admin",
            f"ews users update {username}",
            agency=user.agency,
            detail={
                "user": username,
                "before": before,
                "after": changes,
                **({"units_from": units_from} if units_from else {}),
            },
        )
    return changes


def units_from_assignment(
    db: AppDatabase, agency: str, spec: str, home: Path | None = None
) -> tuple[list[str], dt.date]:
    """The units a commander of ``kind=value`` (e.g. ``district=D7``) oversees, from the data:
    the current units of the officers who held that assignment the day before the agency's
    newest scored date (the newest snapshot's ``assignments``). Returns (units, that day)."""
    import pandas as pd

    from ews.store import Workspace

    kind, sep, value = spec.partition("=")
    if not sep or not kind or not value or kind == "unit":
        raise NotifyError(f"{spec!r}: write KIND=VALUE with an assignment kind, e.g. district=D7")
    with db.session() as s:
        newest = s.scalar(
            select(func.max(ScoringRun.as_of_date)).where(
                ScoringRun.agency == agency, ScoringRun.current.is_(True)
            )
        )
        if newest is None:
            raise NotifyError(f"agency {agency!r} has no scored flags yet: run `ews score`")
        current = {
            o: u
            for o, u in s.execute(
                select(OfficerUnit.officer_id, OfficerUnit.unit).where(OfficerUnit.agency == agency)
            )
        }
    try:
        path = Workspace(home).snapshot(agency).table_path("assignments")
    except (LookupError, FileNotFoundError, ValueError) as e:
        raise NotifyError(f"agency {agency!r}: no snapshot with assignments ({e})") from e
    if not path.exists():
        raise NotifyError(f"agency {agency!r}: its newest snapshot has no assignments")
    a = pd.read_parquet(path, columns=["officer_id", "kind", "value", "start_date", "end_date"])
    day = newest - dt.timedelta(days=1)
    start = pd.to_datetime(a["start_date"]).dt.date
    end = pd.to_datetime(a["end_date"]).dt.date
    held = (a["kind"] == kind) & (a["value"].astype(str) == value) & (start <= day)
    held &= end.isna() | (end >= day)
    officers = set(a.loc[held, "officer_id"].astype(str))
    units = sorted({str(u) for o, u in current.items() if o in officers and u is not None})
    if not units:
        raise NotifyError(f"no scored officer held {kind}={value} on {day.isoformat()}")
    return units, day


def set_policy(
    db: AppDatabase, agency: str, remind_days: int | None, escalate_days: int | None
) -> NotifyPolicy:
    """Set an agency's reminder and escalation days (audited); returns the policy in force."""
    for name, v in (("remind days", remind_days), ("escalate days", escalate_days)):
        if v is not None and not 0 <= v <= 365:
            raise NotifyError(f"{name}: a number of days from 0 to 365")
    with db.write() as s:
        pol = s.get(NotifyPolicy, agency)
        if pol is None:
            pol = NotifyPolicy(
                agency=agency, remind_days=DEFAULT_REMIND_DAYS, escalate_days=DEFAULT_ESCALATE_DAYS
            )
            s.add(pol)
        if remind_days is not None:
            pol.remind_days = remind_days
        if escalate_days is not None:
            pol.escalate_days = escalate_days
        pol.updated_at = utcnow()
        s.flush()
        append(
            s,
            f"cli:{current_actor()}",
            "admin",
            "admin",
            f"ews notify policy {agency}",
            agency=agency,
            detail={"remind_days": pol.remind_days, "escalate_days": pol.escalate_days},
        )
        return pol


def get_policy(s: Session, agency: str) -> tuple[int, int]:
    pol = s.get(NotifyPolicy, agency)
    if pol is None:
        return DEFAULT_REMIND_DAYS, DEFAULT_ESCALATE_DAYS
    return pol.remind_days, pol.escalate_days


# ---------------------------------------------------------------- the flags and who oversees them


@dataclass
class OpenFlag:
    """A flag of a current scoring run with its review state and due date."""

    officer_id: str
    as_of: dt.date
    unit: str | None  # the officer's current unit
    status: str
    raised: dt.date
    due: dt.date | None
    first_reviewed: dt.date | None


def agency_flags(s: Session, agency: str, review_days: int) -> list[OpenFlag]:
    """Every flagged officer of the agency's current scoring runs, with due dates."""
    runs = {
        r.id: r
        for r in s.scalars(
            select(ScoringRun).where(ScoringRun.agency == agency, ScoringRun.current.is_(True))
        )
    }
    if not runs:
        return []
    units: dict[str, str | None] = {
        o: u
        for o, u in s.execute(
            select(OfficerUnit.officer_id, OfficerUnit.unit).where(OfficerUnit.agency == agency)
        )
    }
    states = {
        (f.officer_id, f.as_of_date): f
        for f in s.scalars(select(FlagStatus).where(FlagStatus.agency == agency))
    }
    out = []
    rows = s.execute(
        select(Flag.officer_id, Flag.as_of_date, Flag.run_id).where(
            Flag.run_id.in_(list(runs)), Flag.flagged.is_(True)
        )
    )
    for officer, day, run_id in rows:
        st = states.get((officer, day))
        status = st.status if st else "new"
        raised = runs[run_id].scored_at.date()
        due: dt.date | None = None
        if status == "new":
            due = raised + dt.timedelta(days=review_days)
        elif status == "intervention_assigned":
            due = st.due_date if st else None
        first = st.first_reviewed_at.date() if st and st.first_reviewed_at else None
        out.append(OpenFlag(officer, day, units.get(officer), status, raised, due, first))
    out.sort(key=lambda f: (f.unit or "", f.officer_id, f.as_of))
    return out


def overseers(s: Session, agency: str) -> list[User]:
    """Active supervisors, commanders and reviewers of the agency (reviewers of every agency
    included) whose token has not expired."""
    q = select(User).where(
        User.active.is_(True),
        User.revoked_at.is_(None),
        User.role.in_((*OVERSEERS, "reviewer")),
    )
    now = utcnow()
    return [
        u
        for u in s.scalars(q.order_by(User.username))
        if u.agency in (None, agency) and (u.expires_at is None or u.expires_at > now)
    ]


def oversees(user: User, unit: str | None) -> bool:
    """The scope rule of :mod:`api.scope` for one unit."""
    if user.role == "supervisor":
        return unit is not None and unit in user.units
    if user.role == "commander":
        return not user.units or (unit is not None and unit in user.units)
    return False


# ---------------------------------------------------------------- planning


@dataclass
class Message:
    kind: str
    agency: str
    recipient: str
    address: str | None
    subject: str
    body: str
    items: list[tuple[str, dt.date]] = field(default_factory=list)  # (officer, as_of)
    week: str | None = None  # digests: the ISO week

    @property
    def officers(self) -> list[str]:
        return sorted({o for o, _ in self.items})

    def dedup_key(self, channel: str) -> str:
        if self.week is not None:
            tail = self.week
        else:
            text = "\n".join(f"{o}|{d.isoformat()}" for o, d in sorted(self.items))
            tail = hashlib.sha256(text.encode()).hexdigest()[:32]
        return f"{self.kind}:{channel}:{self.agency}:{self.recipient}:{tail}"[:300]

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON: the same facts as the e-mail (officer ids and links only)."""
        return {
            "kind": self.kind,
            "agency": self.agency,
            "recipient": self.recipient,
            "address": self.address,
            "subject": self.subject,
            "officers": self.officers,
            "flags": [{"officer_id": o, "as_of": d.isoformat()} for o, d in sorted(self.items)],
            "text": self.body,
        }


@dataclass
class Plan:
    messages: list[Message]
    warnings: list[str]


def officer_link(base: str, agency: str, officer_id: str) -> str:
    return f"{base.rstrip('/')}/officers/{quote(agency, safe='')}/{quote(officer_id, safe='')}"


def _sent(s: Session, channel: str, agency: str) -> set[tuple[str, str, str, dt.date]]:
    q = select(NoticeItem.kind, NoticeItem.recipient, NoticeItem.officer_id, NoticeItem.as_of_date)
    q = q.where(NoticeItem.channel == channel, NoticeItem.agency == agency)
    return {(k, r, o, d) for k, r, o, d in s.execute(q)}


def _sent_keys(s: Session, channel: str, agency: str) -> set[str]:
    q = select(Notice.dedup_key).where(Notice.channel == channel, Notice.agency == agency)
    return set(s.scalars(q))


def _lines(base: str, agency: str, flags: Iterable[OpenFlag], due: bool = False) -> list[str]:
    """One line per officer: the id and the link (with the earliest due date when asked)."""
    by_officer: dict[str, list[OpenFlag]] = {}
    for f in flags:
        by_officer.setdefault(f.officer_id, []).append(f)
    out = []
    for officer, fs in sorted(by_officer.items()):
        when = ""
        if due:
            dues = [f.due for f in fs if f.due is not None]
            when = f" (due {min(dues).isoformat()})" if dues else ""
        out.append(f"  - officer {officer}{when}:")
        out.append(f"    {officer_link(base, agency, officer)}")
    return out


def _text(lines: list[str]) -> str:
    """The body with every paragraph wrapped at 76 characters (plain 7-bit mail, no
    quoted-printable breaks inside links); list lines and tables are kept as they are."""
    out = []
    for line in lines:
        if line.startswith(" ") or len(line) <= 76:
            out.append(line)
        else:
            out += textwrap.wrap(line, 76, break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)


FOOTER = (
    "This message names officers only. Sign in to ews to read each flag: why it was raised "
    "stays in the system. A flag is an invitation to support an officer, never a finding "
    "against one."
)


def plan(
    db: AppDatabase,
    today: dt.date,
    channel: str,
    review_days: int,
    base_url: str,
    kinds: Iterable[str] = KINDS,
    agencies: Iterable[str] | None = None,
    need_address: bool = True,
) -> Plan:
    """The messages ``ews notify`` would send on ``today`` over ``channel`` (nothing recorded
    already for that channel). ``need_address``: leave out people with no e-mail address
    (SMTP), with a warning."""
    kinds = set(kinds)
    messages: list[Message] = []
    warnings: list[str] = []
    with db.session() as s:
        names = (
            list(agencies)
            if agencies is not None
            else list(s.scalars(select(ScoringRun.agency).distinct().order_by(ScoringRun.agency)))
        )
        for agency in names:
            remind_days, escalate_days = get_policy(s, agency)
            flags = agency_flags(s, agency, review_days)
            people = overseers(s, agency)
            sent = _sent(s, channel, agency)
            keys = _sent_keys(s, channel, agency)
            ctx = _Ctx(agency, today, base_url, review_days, remind_days, escalate_days, sent)
            for user in people:
                if need_address and not user.email:
                    if any(oversees(user, f.unit) for f in flags) or user.role == "reviewer":
                        warnings.append(
                            f"{agency}: {user.role} {user.username} has no e-mail address "
                            f"(ews users update {user.username} --email ADDR): not notified"
                        )
                    continue
                mine = [f for f in flags if oversees(user, f.unit)]
                if user.role == "supervisor":
                    if "new_flags" in kinds:
                        messages += _new_flags(ctx, user, mine)
                    if "reminder" in kinds:
                        messages += _reminders(ctx, user, mine)
                elif user.role == "commander":
                    if "escalation" in kinds:
                        messages += _escalations(ctx, user, mine, people)
                elif "digest" in kinds:
                    msg = _digest(ctx, user, flags)
                    if msg.dedup_key(channel) not in keys:
                        messages.append(msg)
            covered = {
                f.unit
                for f in flags
                for u in people
                if u.role == "commander" and oversees(u, f.unit)
            }
            late = {f.unit for f in flags if ctx.escalate(f)} - covered
            if "escalation" in kinds and late:
                warnings.append(
                    f"{agency}: no commander oversees unit(s) "
                    f"{', '.join(sorted(str(u) for u in late))} with overdue flags: "
                    "nobody to escalate to (ews users add NAME --role commander)"
                )
    return Plan(messages, warnings)


@dataclass
class _Ctx:
    agency: str
    today: dt.date
    base: str
    review_days: int
    remind_days: int
    escalate_days: int
    sent: set[tuple[str, str, str, dt.date]]

    def fresh(self, kind: str, user: User, flags: Iterable[OpenFlag]) -> list[OpenFlag]:
        return [f for f in flags if (kind, user.username, f.officer_id, f.as_of) not in self.sent]

    def remind(self, f: OpenFlag) -> bool:
        return f.due is not None and 0 <= (f.due - self.today).days <= self.remind_days

    def escalate(self, f: OpenFlag) -> bool:
        return f.due is not None and (self.today - f.due).days > self.escalate_days


def _to(
    user: User, kind: str, ctx: _Ctx, subject: str, body: str, flags: list[OpenFlag]
) -> Message:
    """One message of ``kind`` to ``user`` about ``flags``."""
    return Message(
        kind,
        ctx.agency,
        user.username,
        user.email,
        subject,
        body,
        [(f.officer_id, f.as_of) for f in flags],
    )


def _new_flags(ctx: _Ctx, user: User, mine: list[OpenFlag]) -> list[Message]:
    fresh = ctx.fresh("new_flags", user, [f for f in mine if f.status == "new"])
    if not fresh:
        return []
    n = len(fresh)
    officers = len({f.officer_id for f in fresh})
    due = min(f.due for f in fresh if f.due is not None)
    subject = f"ews: {n} new flag{'s' * (n != 1)} in your units ({ctx.agency})"
    body = _text(
        [
            f"Hello {user.username},",
            "",
            f"{n} new flag{'s' * (n != 1)} of {officers} officer{'s' * (officers != 1)} in "
            f"your units of agency {ctx.agency} await your review (within {ctx.review_days} "
            f"days of each flag; the first is due {due.isoformat()}).",
            "",
            "Officers:",
            *_lines(ctx.base, ctx.agency, fresh),
            "",
            FOOTER,
        ]
    )
    return [_to(user, "new_flags", ctx, subject, body, fresh)]


def _reminders(ctx: _Ctx, user: User, mine: list[OpenFlag]) -> list[Message]:
    fresh = ctx.fresh("reminder", user, [f for f in mine if ctx.remind(f)])
    if not fresh:
        return []
    n = len(fresh)
    subject = f"ews: {n} review{'s' * (n != 1)} due soon ({ctx.agency})"
    body = _text(
        [
            f"Hello {user.username},",
            "",
            f"{n} flag{'s' * (n != 1)} in your units of agency {ctx.agency} "
            f"{'are' if n != 1 else 'is'} due within {ctx.remind_days} days "
            "(a first review step, or an intervention's completion):",
            "",
            *_lines(ctx.base, ctx.agency, fresh, due=True),
            "",
            FOOTER,
        ]
    )
    return [_to(user, "reminder", ctx, subject, body, fresh)]


def _escalations(ctx: _Ctx, user: User, mine: list[OpenFlag], people: list[User]) -> list[Message]:
    fresh = ctx.fresh("escalation", user, [f for f in mine if ctx.escalate(f)])
    if not fresh:
        return []
    n = len(fresh)
    by_unit: dict[str, list[OpenFlag]] = {}
    for f in fresh:
        by_unit.setdefault(str(f.unit), []).append(f)
    lines: list[str] = []
    for unit, fs in sorted(by_unit.items()):
        sups = [p.username for p in people if p.role == "supervisor" and oversees(p, unit)]
        lines.append(
            f"Unit {unit} (supervisor{'s' * (len(sups) != 1)}: {', '.join(sups) or 'none'}): "
            f"{len(fs)} overdue flag{'s' * (len(fs) != 1)}:"
        )
        lines += _lines(ctx.base, ctx.agency, fs, due=True)
    subject = f"ews: {n} overdue flag{'s' * (n != 1)} escalated to you ({ctx.agency})"
    body = _text(
        [
            f"Hello {user.username},",
            "",
            f"{n} flag{'s' * (n != 1)} in units you oversee in agency {ctx.agency} "
            f"{'are' if n != 1 else 'is'} overdue by more than {ctx.escalate_days} "
            f"day{'s' * (ctx.escalate_days != 1)} (review window {ctx.review_days} days):",
            "",
            *lines,
            "",
            FOOTER,
        ]
    )
    return [_to(user, "escalation", ctx, subject, body, fresh)]


def unit_table(flags: list[OpenFlag], today: dt.date, review_days: int) -> list[dict[str, Any]]:
    """Per current unit: flags raised in the last 7 days, reviewed in time (first step
    within the review window), reviewed late, open (never reviewed) and overdue now."""
    rows: dict[str, dict[str, Any]] = {}
    for f in flags:
        r = rows.setdefault(
            str(f.unit),
            {
                "unit": str(f.unit),
                "raised_7d": 0,
                "flags": 0,
                "in_time": 0,
                "late": 0,
                "open": 0,
                "overdue": 0,
            },
        )
        r["flags"] += 1
        r["raised_7d"] += (today - f.raised).days < 7
        if f.first_reviewed is not None:
            on_time = (f.first_reviewed - f.raised).days <= review_days
            r["in_time" if on_time else "late"] += 1
        else:
            r["open"] += 1
        r["overdue"] += f.due is not None and today > f.due
    return [rows[k] for k in sorted(rows)]


def _digest(ctx: _Ctx, user: User, flags: list[OpenFlag]) -> Message:
    year, week, _ = ctx.today.isocalendar()
    rows = unit_table(flags, ctx.today, ctx.review_days)
    head = f"{'unit':<14}{'raised 7d':>10}{'flags':>7}{'in time':>9}{'late':>6}{'open':>6}"
    head += f"{'overdue':>9}"
    lines = [head]
    total = {k: 0 for k in ("raised_7d", "flags", "in_time", "late", "open", "overdue")}
    for r in rows:
        lines.append(
            f"{r['unit'][:13]:<14}{r['raised_7d']:>10}{r['flags']:>7}{r['in_time']:>9}"
            f"{r['late']:>6}{r['open']:>6}{r['overdue']:>9}"
        )
        for k in total:
            total[k] += r[k]
    lines.append(
        f"{'all units':<14}{total['raised_7d']:>10}{total['flags']:>7}{total['in_time']:>9}"
        f"{total['late']:>6}{total['open']:>6}{total['overdue']:>9}"
    )
    body = _text(
        [
            f"Hello {user.username},",
            "",
            f"The review of agency {ctx.agency}'s flags, week {year}-W{week:02d} (to "
            f"{ctx.today.isoformat()}; review window {ctx.review_days} days; units are the "
            "officers' current units):",
            "",
            *lines,
            "",
            f"Review timeliness in full: {ctx.base.rstrip('/')}/timeliness",
        ]
    )
    return Message(
        "digest",
        ctx.agency,
        user.username,
        user.email,
        f"ews: weekly review digest {year}-W{week:02d} ({ctx.agency})",
        body,
        week=f"{year}-W{week:02d}",
    )


# ---------------------------------------------------------------- delivery


class Sender(Protocol):
    channel: str

    def send(self, msg: Message) -> None: ...


@dataclass
class SmtpSender:
    """Delivery over SMTP, one connection per message (STARTTLS and login when asked)."""

    url: str
    sender: str = "ews@localhost"
    timeout: float = 30.0
    channel: str = "smtp"

    def __post_init__(self) -> None:
        u = urlsplit(self.url)
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            raise NotifyError(
                "EWS_SMTP_URL: write smtp://[user:password@]host[:port][?starttls=1] or smtps://..."
            )
        q = parse_qs(u.query)
        self.host = u.hostname
        try:
            self.port = u.port or (465 if u.scheme == "smtps" else 25)
        except ValueError as e:
            raise NotifyError(f"EWS_SMTP_URL: {e}") from e
        self.tls = u.scheme == "smtps"
        self.starttls = q.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
        self.user = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        self.sender = q.get("from", [self.sender])[0]
        self.cafile = q.get("cafile", [None])[0]  # an agency's own CA (PEM)

    def email(self, msg: Message) -> EmailMessage:
        if not msg.address:
            raise NotifyError(f"{msg.recipient} has no e-mail address")
        m = EmailMessage()
        m["From"] = self.sender
        m["To"] = formataddr((msg.recipient, msg.address))
        m["Subject"] = msg.subject
        m["Message-ID"] = make_msgid(domain="ews.local")
        m["X-EWS-Kind"] = msg.kind
        m.set_content(msg.body)
        return m

    def send(self, msg: Message) -> None:
        m = self.email(msg)
        context = ssl.create_default_context(cafile=self.cafile)
        smtp: smtplib.SMTP
        if self.tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(m)


def sign(secret: bytes, body: bytes) -> str:
    """The webhook's signature header value: ``sha256=`` + HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver checks (constant-time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


@dataclass
class WebhookSender:
    """A JSON POST per message, signed with HMAC-SHA256 in :data:`SIGNATURE_HEADER`."""

    url: str
    secret: bytes
    timeout: float = 30.0
    channel: str = "webhook"

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https"):
            raise NotifyError("EWS_WEBHOOK_URL: an http:// or https:// address")
        if len(self.secret) < 16:
            raise NotifyError("the webhook key (EWS_WEBHOOK_SECRET[_FILE]) needs 16+ bytes")

    def send(self, msg: Message) -> None:
        import httpx

        body = json.dumps(msg.payload(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body)}
        r = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        r.raise_for_status()


def webhook_secret(settings: NotifySettings) -> bytes:
    if settings.webhook_secret_file is not None:
        try:
            return settings.webhook_secret_file.read_bytes().strip()
        except OSError as e:
            raise NotifyError(f"EWS_WEBHOOK_SECRET_FILE: {e}") from e
    if settings.webhook_secret:
        return settings.webhook_secret.encode()
    raise NotifyError("a webhook needs a key: EWS_WEBHOOK_SECRET or EWS_WEBHOOK_SECRET_FILE")


@dataclass
class Outcome:
    sent: list[tuple[Message, int]] = field(default_factory=list)  # (message, notice id)
    failed: list[tuple[Message, str]] = field(default_factory=list)
    skipped: list[Message] = field(default_factory=list)  # recorded meanwhile by another run


def deliver(
    db: AppDatabase,
    sender: Sender,
    messages: list[Message],
    retries: int = 3,
    backoff: float = 2.0,
    today: dt.date | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Send each message (up to ``retries`` attempts, waiting ``backoff`` seconds, doubled
    after each failure) and record each one delivered, with its audit entry, in one
    transaction. A failure records only a ``notify_failed`` audit entry."""
    out = Outcome()
    actor = f"cli:{current_actor()}"
    for msg in messages:
        key = msg.dedup_key(sender.channel)
        error = ""
        for attempt in range(retries):
            try:
                sender.send(msg)
                error = ""
                break
            except Exception as e:  # SMTP, socket, HTTP: anything a transport raises
                error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            if attempt + 1 < retries:
                if progress:
                    progress(f"retrying {msg.kind} to {msg.recipient} ({error})")
                sleep(backoff * 2**attempt)
        detail = {
            "kind": msg.kind,
            "channel": sender.channel,
            "recipient": msg.recipient,
            "flags": len(msg.items),
            "officers": msg.officers,
        }
        if error:
            out.failed.append((msg, error))
            db.audit(
                actor,
                "system",
                "notify_failed",
                f"ews notify {msg.kind} {msg.recipient}",
                agency=msg.agency,
                detail={**detail, "error": error[:300], "attempts": retries},
            )
            continue
        with db.write() as s:
            if s.scalar(select(Notice.id).where(Notice.dedup_key == key)) is not None:
                out.skipped.append(msg)
                continue
            notice = Notice(
                agency=msg.agency,
                kind=msg.kind,
                channel=sender.channel,
                recipient=msg.recipient,
                address=msg.address,
                dedup_key=key,
                subject=msg.subject[:500],
                officers=msg.officers,
                detail={"flags": len(msg.items), "today": (today or dt.date.today()).isoformat()},
            )
            s.add(notice)
            s.flush()
            if msg.items:
                s.execute(
                    insert(NoticeItem),
                    [
                        {
                            "notice_id": notice.id,
                            "channel": sender.channel,
                            "kind": msg.kind,
                            "recipient": msg.recipient,
                            "agency": msg.agency,
                            "officer_id": o,
                            "as_of_date": d,
                        }
                        for o, d in msg.items
                    ],
                )
            notice.audit_id = append(
                s,
                actor,
                "system",
                "notify",
                f"ews notify {msg.kind} {msg.recipient}",
                agency=msg.agency,
                detail={**detail, "notice": notice.id},
            )
            out.sent.append((msg, notice.id))
    return out


NOTIFY_LOCK_KEY = 0x65777332  # PostgreSQL advisory lock of `ews notify` runs


class Busy(RuntimeError):
    """Another ``ews notify`` holds the lock."""


@contextmanager
def run_lock(db: AppDatabase, home: Path) -> Iterator[None]:
    """One ``ews notify`` at a time per database, so that two runs (cron overlapping itself,
    or two hosts) never both deliver the same notice: an advisory lock on PostgreSQL, a file
    lock beside a SQLite database. Raises :class:`Busy` at once when it is held."""
    if not db.sqlite:
        from sqlalchemy import text

        with db.engine.connect() as c:
            if not c.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": NOTIFY_LOCK_KEY}
            ).scalar():
                raise Busy("another `ews notify` is running on this database")
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": NOTIFY_LOCK_KEY})
                c.commit()
        return
    import fcntl

    path = Path(db.url.removeprefix("sqlite:///")).with_name("notify.lock")
    if not path.parent.is_dir():
        path = home / "notify.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise Busy("another `ews notify` is running on this database") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- what was sent (pages)


def notice_summary(db: AppDatabase, agency: str) -> dict[str, Any]:
    """Notices sent for an agency by kind, escalations by commander, and the newest ones."""
    with db.session() as s:
        rows = list(
            s.scalars(select(Notice).where(Notice.agency == agency).order_by(Notice.id.desc()))
        )
    by_kind = {k: 0 for k in KINDS}
    flags_escalated = 0
    for n in rows:
        by_kind[n.kind] = by_kind.get(n.kind, 0) + 1
        if n.kind == "escalation":
            flags_escalated += int(n.detail.get("flags", 0))
    return {
        "by_kind": by_kind,
        "flags_escalated": flags_escalated,
        "recent": [
            {
                "sent_at": n.sent_at.isoformat(timespec="seconds"),
                "kind": n.kind,
                "channel": n.channel,
                "recipient": n.recipient,
                "flags": int(n.detail.get("flags", 0)),
            }
            for n in rows[:20]
        ],
    }


def queue_summary(
    db: AppDatabase, user: User, agency: str, review_days: int, today: dt.date | None = None
) -> dict[str, Any] | None:
    """A supervisor's or commander's queue in an agency (counts only, no officer): open flags
    that are ``new`` (not yet due soon), ``due_soon`` (due within the agency's reminder
    days) and ``overdue``; for a commander, the same per supervisor of their units, and the
    notices escalated to them. None for other roles."""
    if user.role not in OVERSEERS:
        return None
    today = today or dt.date.today()
    with db.session() as s:
        remind_days, escalate_days = get_policy(s, agency)
        flags = [f for f in agency_flags(s, agency, review_days) if oversees(user, f.unit)]
        people = overseers(s, agency) if user.role == "commander" else []
        escalated = s.scalar(
            select(func.count())
            .select_from(NoticeItem)
            .where(
                NoticeItem.agency == agency,
                NoticeItem.kind == "escalation",
                NoticeItem.recipient == user.username,
            )
        )

    def buckets(fs: list[OpenFlag]) -> dict[str, int]:
        out = {"new": 0, "due_soon": 0, "overdue": 0, "open": 0}
        for f in fs:
            if f.due is None:
                continue
            out["open"] += 1
            if today > f.due:
                out["overdue"] += 1
            elif (f.due - today).days <= remind_days:
                out["due_soon"] += 1
            elif f.status == "new":
                out["new"] += 1
        return out

    rows: list[dict[str, Any]] = []
    covered: set[str] = set()
    for p in people:
        if p.role == "supervisor" and any(oversees(user, u) for u in p.units):
            units = [u for u in p.units if oversees(user, u)]
            rows.append(
                {
                    "supervisor": p.username,
                    "units": units,
                    **buckets([f for f in flags if f.unit in units]),
                }
            )
            covered.update(units)
    orphan = [f for f in flags if f.unit not in covered]
    if user.role == "commander" and orphan:
        rows.append({"supervisor": None, "units": [], **buckets(orphan)})
    return {
        **buckets(flags),
        "remind_days": remind_days,
        "escalate_days": escalate_days,
        "role": user.role,
        "by_supervisor": rows,
        "escalated_to_me": int(escalated or 0),
    }

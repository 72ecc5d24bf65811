"""``ews notify`` and ``ews notify-policy`` (the work is in :mod:`ews.notify`)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import typer

from ews.cli_style import AGENCY_HELP, fail, parse_date, unknown_agency_message, usage_error


def notify(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be sent; send and record nothing."
    ),
    smtp: bool = typer.Option(False, "--smtp", help="Deliver by e-mail over EWS_SMTP_URL."),
    smtp_url: str | None = typer.Option(
        None, "--smtp-url", help="smtp://user:pass@host:port?starttls=1 (default EWS_SMTP_URL)."
    ),
    webhook: bool = typer.Option(
        False, "--webhook", help="POST each notice as signed JSON to EWS_WEBHOOK_URL."
    ),
    webhook_url: str | None = typer.Option(
        None, "--webhook-url", help="The webhook's address (default EWS_WEBHOOK_URL)."
    ),
    agency: list[str] | None = typer.Option(
        None, "--agency", help="Only this agency; repeat for several (default: every one)."
    ),
    kind: list[str] | None = typer.Option(
        None, "--kind", help="Only new_flags, reminder, escalation or digest (repeat)."
    ),
    today: dt.date | None = typer.Option(
        None,
        "--today",
        parser=parse_date,
        metavar="DATE",
        help="The day the due dates are judged at (default: today).",
    ),
) -> None:
    """Tell supervisors of new flags and due reviews, escalate overdue flags to commanders, and
    send reviewers a weekly digest. Run it from cron after each `ews score` (or hourly).

    Idempotent: a notice is recorded with its audit entry only once delivered, and never sent
    twice; a failed delivery is retried with backoff (EWS_NOTIFY_RETRIES, EWS_NOTIFY_BACKOFF),
    reported, and tried again at the next run. A message names officers and links to their
    pages only: no reason, event or score. Due dates: EWS_REVIEW_DAYS after a flag is raised
    (default 14), reminders and escalation days per agency (`ews notify-policy`).

    Exit 0 all delivered, 1 a delivery failed (or another run is going), 2 bad input (no
    channel, a bad URL or key)."""
    from ews import notify as nt
    from ews.db import open_app_database
    from ews.settings import get_settings

    kinds = list(dict.fromkeys(kind or nt.KINDS))
    bad = [k for k in kinds if k not in nt.KINDS]
    if bad:
        raise usage_error(f"unknown --kind {', '.join(bad)}; kinds: {', '.join(nt.KINDS)}")
    if not (smtp or webhook or dry_run):
        raise usage_error("choose a delivery: --smtp and/or --webhook (or --dry-run)")
    ns = nt.NotifySettings()
    senders: list[nt.Sender] = []
    try:
        if smtp:
            url = smtp_url or ns.smtp_url
            if not url:
                raise nt.NotifyError("--smtp needs EWS_SMTP_URL (or --smtp-url)")
            senders.append(nt.SmtpSender(url, ns.smtp_from, ns.smtp_timeout))
        if webhook:
            url = webhook_url or ns.webhook_url
            if not url:
                raise nt.NotifyError("--webhook needs EWS_WEBHOOK_URL (or --webhook-url)")
            senders.append(nt.WebhookSender(url, nt.webhook_secret(ns), ns.smtp_timeout))
    except nt.NotifyError as e:
        raise usage_error(str(e)) from e
    settings = get_settings()
    day = today or dt.date.today()
    db = open_app_database(settings)
    failed = 0
    stack = contextlib.ExitStack()
    try:
        if agency:
            from ews.db import Agency

            with db.session() as s:
                unknown = [a for a in agency if s.get(Agency, a) is None]
            if unknown:  # the one answer (ews.cli_style) for an agency there is not
                raise usage_error(unknown_agency_message(unknown[0], _known_agencies(db)))
        channels = [s.channel for s in senders] or ["smtp"]
        if not dry_run:
            try:
                stack.enter_context(nt.run_lock(db, settings.home))
            except nt.Busy as e:
                raise fail(str(e)) from e
        for channel in channels:
            p = nt.plan(
                db,
                day,
                channel,
                settings.review_days,
                ns.public_url,
                kinds,
                agency or None,
                need_address=channel == "smtp",
            )
            for w in p.warnings:
                typer.secho(f"warning: {w}", err=True, fg=typer.colors.YELLOW)
            if dry_run:
                for m in p.messages:
                    typer.echo(f"--- {m.kind} to {m.recipient} <{m.address or '-'}> ({channel})")
                    typer.echo(f"Subject: {m.subject}\n\n{m.body}\n")
                typer.echo(f"dry run ({channel}): {len(p.messages)} message(s) would be sent")
                continue
            sender = next(s for s in senders if s.channel == channel)
            out = nt.deliver(
                db,
                sender,
                p.messages,
                ns.notify_retries,
                ns.notify_backoff,
                today=day,
                progress=lambda t: typer.echo(f"  {t}", err=True),
            )
            for m, notice_id in out.sent:
                typer.echo(
                    f"sent {m.kind} to {m.recipient} <{m.address or '-'}> by {channel} "
                    f"({len(m.items)} flag(s); notice {notice_id})"
                )
            for m, error in out.failed:
                typer.secho(
                    f"FAILED {m.kind} to {m.recipient} <{m.address or '-'}> by {channel} after "
                    f"{ns.notify_retries} attempt(s): {error} (not marked sent)",
                    err=True,
                    fg=typer.colors.RED,
                )
            failed += len(out.failed)
            typer.echo(
                f"{channel}: {len(out.sent)} sent, {len(out.failed)} failed, "
                f"{len(out.skipped)} already sent by another run"
            )
    finally:
        stack.close()
        db.dispose()
    if failed:
        raise fail(f"{failed} notice(s) could not be delivered; they will be tried again")


def notify_policy(
    agency: str | None = typer.Option(None, "--agency", help=AGENCY_HELP),
    remind_days: int | None = typer.Option(
        None, "--remind-days", help="Remind supervisors this many days before a due date."
    ),
    escalate_days: int | None = typer.Option(
        None, "--escalate-days", help="Escalate a flag overdue by more than this many days."
    ),
) -> None:
    """Show or set an agency's reminder and escalation days (defaults: remind 3 days before a
    review is due, escalate as soon as it is overdue). Every change is an audit entry."""
    from sqlalchemy import select

    from ews import notify as nt
    from ews.db import Agency, open_app_database

    db = open_app_database()
    try:
        with db.session() as s:
            known = list(s.scalars(select(Agency.name).order_by(Agency.name)))
            if agency is None and len(known) != 1:
                raise usage_error(f"name an agency with --agency (known: {', '.join(known)})")
            agency = agency or known[0]
            if agency not in known:  # the one answer (ews.cli_style) for an agency there is not
                raise usage_error(unknown_agency_message(agency, _known_agencies(db)))
            pol = nt.get_policy(s, agency)
        if remind_days is not None or escalate_days is not None:
            try:
                p = nt.set_policy(db, agency, remind_days, escalate_days)
            except nt.NotifyError as e:
                raise usage_error(str(e)) from e
            pol = (p.remind_days, p.escalate_days)
    finally:
        db.dispose()
    typer.echo(f"{agency}: remind {pol[0]} day(s) before due, escalate after {pol[1]} day(s)")


def register(app: typer.Typer) -> None:
    app.command("notify")(notify)
    app.command("notify-policy")(notify_policy)


def _known_agencies(db: Any) -> list[str]:
    """The agencies of the application database and of the workspace, for the message."""
    from sqlalchemy import select

    from ews.db import Agency
    from ews.store import Workspace

    with db.session() as s:
        names = set(s.scalars(select(Agency.name)))
    return sorted(names | set(Workspace().agencies()))

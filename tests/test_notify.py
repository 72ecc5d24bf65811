"""`ews notify` against a real SMTP server on loopback (aiosmtpd) and a real webhook
receiver: one message per supervisor with new flags, nothing twice, one escalation per
overdue flag, never a reason or an event in a message, signed webhooks, and a failed
delivery never marked sent."""

from __future__ import annotations

import datetime as dt
import email
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from email.message import Message as EmailMsg
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from _service import NEW, OLD, auth, build_world, flags_frame
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from api.app import create_app
from api.security import create_user
from ews.cli import app
from ews.db import AuditLog, ScoringRun, utcnow
from ews.flagstore import save_flags
from ews.notify import SIGNATURE_HEADER, Notice, NoticeItem, verify_signature

TODAY = dt.date.today()  # the flags of the world are raised today (scored_at = now)
# what a message must never carry: the explanation, the factor, the rule, the events
FORBIDDEN = ("use-of-force", "force_180d", "cmpd", "EXCESSIVE", "TASER", "0.9", "score")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """An aiosmtpd handler keeping every message; ``reject`` answers 554 to DATA."""

    def __init__(self) -> None:
        self.messages: list[EmailMsg] = []
        self.reject = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reject:
            return "554 5.6.0 rejected by the test"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def of(self, kind: str) -> list[EmailMsg]:
        return [m for m in self.messages if m["X-EWS-Kind"] == kind]


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = _free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{port}?from=ews@agency.test"
    finally:
        ctl.stop()


@pytest.fixture
def world(ews_home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("EWS_DATABASE_URL", db_url)
    monkeypatch.setenv("EWS_NOTIFY_BACKOFF", "0.01")
    monkeypatch.setenv("EWS_PUBLIC_URL", "https://ews.agency.test")
    w = build_world(ews_home, db_url)
    yield w
    w.db.dispose()


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _body(m: EmailMsg) -> str:
    part = m.get_payload(decode=True)
    assert isinstance(part, bytes)
    return part.decode()


def _to(m: EmailMsg) -> str:
    return parseaddr(str(m["To"]))[1]


def _emails() -> None:
    for name in ("sgt.lee", "sgt.ray", "auditor"):
        assert _run("users", "update", name, "--email", f"{name}@agency.test")[0] == 0


def test_one_message_per_supervisor_then_nothing(world: Any, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    _emails()
    code, out = _run("notify", "--smtp", "--smtp-url", url)
    assert code == 0, out
    new = inbox.of("new_flags")
    assert sorted(_to(m) for m in new) == ["sgt.lee@agency.test", "sgt.ray@agency.test"]
    lee = next(_body(m) for m in new if _to(m) == "sgt.lee@agency.test")
    # unit 12 now: a1 (flagged at both dates) and m2 (flagged at OLD in unit 7, moved in)
    assert "3 new flags of 2 officers" in lee
    assert "https://ews.agency.test/officers/demo/a1" in lee
    assert "https://ews.agency.test/officers/demo/m2" in lee
    assert "/officers/demo/b1" not in lee and "/officers/demo/m1" not in lee
    assert len(inbox.of("digest")) == 1  # the reviewer of demo, once this week
    for m in inbox.messages:
        assert m["Content-Transfer-Encoding"] == "7bit"  # links whole in the raw mail
        for word in FORBIDDEN:
            assert word not in _body(m) and word not in m["Subject"], (word, m["Subject"])
    # recorded with an audit entry each, in the same transaction
    with world.db.session() as s:
        notices = list(s.scalars(select(Notice)))
        assert len(notices) == 3
        audited = {a.id: a for a in s.scalars(select(AuditLog).where(AuditLog.action == "notify"))}
        assert {n.audit_id for n in notices} == set(audited)
        assert s.scalar(select(func.count()).select_from(NoticeItem)) == 3 + 4
    # a second run sends nothing
    before = len(inbox.messages)
    code, out = _run("notify", "--smtp", "--smtp-url", url)
    assert code == 0 and "0 sent" in out
    assert len(inbox.messages) == before
    # a new scoring run: one message, to the one supervisor with a new flag
    save_flags(
        "demo",
        NEW + dt.timedelta(days=90),
        flags_frame([("b2", "7", 0.9, True), ("a1", "12", 0.2, False), ("b1", "7", 0.1, False)]),
        home=world.settings.home,
        db=world.db,
    )
    code, out = _run("notify", "--smtp", "--smtp-url", url, "--kind", "new_flags")
    assert code == 0, out
    added = inbox.messages[before:]
    assert [_to(m) for m in added] == ["sgt.ray@agency.test"]
    assert "1 new flag of 1 officer" in _body(added[0]) and "/officers/demo/b2" in _body(added[0])


def test_reminder_and_escalation_once(world: Any, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    _emails()
    assert _run(
        "users", "add", "cmdr.7", "--role", "commander", "--agency", "demo", "--unit", "7",
        "--email", "cmdr7@agency.test",
    )[0] == 0  # fmt: skip
    # review window 14 days: due TODAY + 14; reminders 3 days before, escalation after
    assert _run("notify-policy", "--agency", "demo", "--escalate-days", "2")[0] == 0
    day = (TODAY + dt.timedelta(days=12)).isoformat()
    code, out = _run("notify", "--smtp", "--smtp-url", url, "--today", day, "--kind", "reminder")
    assert code == 0, out
    assert sorted(_to(m) for m in inbox.of("reminder")) == [
        "sgt.lee@agency.test",
        "sgt.ray@agency.test",
    ]
    assert f"(due {(TODAY + dt.timedelta(days=14)).isoformat()})" in _body(inbox.of("reminder")[0])
    # overdue by 1 day: not yet escalated (escalate after 2)
    day = (TODAY + dt.timedelta(days=15)).isoformat()
    code, out = _run("notify", "--smtp", "--smtp-url", url, "--today", day)
    assert code == 0 and not inbox.of("escalation")
    # sgt.ray reviews b1's newest flag: a flag under review is not overdue, not escalated
    with TestClient(create_app(world.settings)) as c:
        r = c.post(
            "/api/officers/demo/b1/reviews",
            json={"status": "under_review", "as_of_date": NEW.isoformat()},
            headers=auth(world.tokens["sgt7"]),
        )
        assert r.status_code in (200, 201), r.text
    for offset in (17, 18, 30):
        day = (TODAY + dt.timedelta(days=offset)).isoformat()
        code, out = _run("notify", "--smtp", "--smtp-url", url, "--today", day)
        assert code == 0, out
    esc = inbox.of("escalation")
    assert len(esc) == 1 and _to(esc[0]) == "cmdr7@agency.test"
    body = _body(esc[0])
    assert "Unit 7 (supervisor: sgt.ray): 3 overdue flags:" in body
    assert "/officers/demo/m1" in body and "/officers/demo/a1" not in body
    with world.db.session() as s:
        named = s.execute(
            select(NoticeItem.officer_id, NoticeItem.as_of_date).where(
                NoticeItem.kind == "escalation"
            )
        ).all()
    assert sorted(named) == [("b1", OLD), ("m1", OLD), ("m1", NEW)]
    assert "no commander oversees unit(s) 12" in out
    assert len(inbox.of("reminder")) == 2  # never repeated
    for m in inbox.messages:
        assert not any(w in _body(m) for w in FORBIDDEN)


def test_failed_delivery_is_not_marked_sent(world: Any, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    _emails()
    inbox.reject = True
    code, out = _run("notify", "--smtp", "--smtp-url", url, "--kind", "new_flags")
    assert code == 1
    assert "FAILED new_flags to sgt.lee" in out and "not marked sent" in out
    assert "retrying" in out  # backoff retries (3 attempts by default)
    with world.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 0
        assert s.scalar(select(func.count()).select_from(NoticeItem)) == 0
        failed = list(s.scalars(select(AuditLog).where(AuditLog.action == "notify_failed")))
        assert len(failed) == 2 and "554" in failed[0].detail["error"]
    # nothing listening at all: refused connections fail the same way
    code, out = _run(
        "notify", "--smtp", "--smtp-url", f"smtp://127.0.0.1:{_free_port()}", "--kind", "new_flags"
    )
    assert code == 1 and "ConnectionRefusedError" in out
    # the server takes mail again: the same notices go out, once
    inbox.reject = False
    assert _run("notify", "--smtp", "--smtp-url", url, "--kind", "new_flags")[0] == 0
    assert len(inbox.of("new_flags")) == 2
    assert _run("notify", "--smtp", "--smtp-url", url, "--kind", "new_flags")[0] == 0
    assert len(inbox.of("new_flags")) == 2


class _Receiver(http.server.BaseHTTPRequestHandler):
    secret = b""
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not verify_signature(self.secret, body, self.headers.get(SIGNATURE_HEADER)):
            self.send_response(401)
            self.end_headers()
            return
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_is_signed_and_checked(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Receiver.secret, _Receiver.received = b"k" * 32, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ews"
    try:
        key = tmp_path / "webhook.key"
        key.write_bytes(b"wrong-key-" * 4)
        monkeypatch.setenv("EWS_WEBHOOK_SECRET_FILE", str(key))
        code, out = _run("notify", "--webhook", "--webhook-url", url, "--kind", "new_flags")
        assert code == 1 and "401" in out and not _Receiver.received  # forged: refused
        with world.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Notice)) == 0
        key.write_bytes(b"k" * 32 + b"\n")
        code, out = _run("notify", "--webhook", "--webhook-url", url, "--kind", "new_flags")
        assert code == 0, out
        # supervisors need no e-mail address for a webhook
        assert sorted(p["recipient"] for p in _Receiver.received) == ["sgt.lee", "sgt.ray"]
        lee = next(p for p in _Receiver.received if p["recipient"] == "sgt.lee")
        assert lee["officers"] == ["a1", "m2"] and len(lee["flags"]) == 3
        assert not any(w in json.dumps(p) for p in _Receiver.received for w in FORBIDDEN)
        assert _run("notify", "--webhook", "--webhook-url", url)[0] == 0
        assert len([p for p in _Receiver.received if p["kind"] == "new_flags"]) == 2
    finally:
        server.shutdown()


def test_users_email_and_commander(world: Any) -> None:
    assert _run("users", "update", "sgt.lee", "--email", "not an address")[0] == 2
    assert _run("users", "update", "nobody", "--email", "a@b.org")[0] == 2
    assert _run("users", "add", "c1", "--role", "commander")[0] == 2  # no agency
    assert _run("users", "add", "r1", "--role", "reviewer", "--unit", "7")[0] == 2
    code, out = _run("users", "update", "sgt.lee", "--email", "lee@agency.test", "--unit", "12")
    assert code == 0 and "email, units" in out
    code, out = _run("users", "list")
    assert "sgt.lee\tsupervisor\tagency=demo units=12 email=lee@agency.test" in out
    with world.db.session() as s:
        entry = s.scalars(
            select(AuditLog).where(AuditLog.resource == "ews users update sgt.lee")
        ).one()
    assert entry.detail["after"] == {"email": "lee@agency.test", "units": ["12"]}
    assert _run("notify")[0] == 2  # no channel chosen
    assert _run("notify", "--smtp", "--smtp-url", "http://x")[0] == 2
    assert _run("notify-policy", "--agency", "demo", "--remind-days", "-1")[0] == 2


def test_commander_scope(world: Any) -> None:
    tokens = {
        "c7": create_user(world.db, "cmdr.7", "commander", "demo", ["7"]),
        "call": create_user(world.db, "cmdr.all", "commander", "demo"),
    }
    with TestClient(create_app(world.settings), raise_server_exceptions=False) as c:
        # a1 is in unit 12 now: outside cmdr.7's units, the 404 of a missing record
        r = c.get("/api/officers/demo/a1", headers=auth(tokens["c7"]))
        assert r.status_code == 404 and r.json() == {"detail": "not found"}
        assert c.get("/api/officers/demo/b1", headers=auth(tokens["c7"])).status_code == 200
        assert c.get("/api/officers/demo/a1", headers=auth(tokens["call"])).status_code == 200
        assert c.get("/api/officers/other/x1", headers=auth(tokens["call"])).status_code == 404
        shown = c.get("/api/flags", params={"agency": "demo"}, headers=auth(tokens["c7"])).json()
        assert {f["officer_id"] for f in shown["data"]} == {"m1", "b1"}
        # a commander reads, never records a review
        r = c.post(
            "/api/officers/demo/b1/reviews",
            json={"status": "under_review", "as_of_date": NEW.isoformat()},
            headers=auth(tokens["c7"]),
        )
        assert r.status_code == 403


def test_pages_queue_commander_and_notices(world: Any, smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    _emails()
    token = create_user(world.db, "cmdr.7", "commander", "demo", ["7"], email="c7@agency.test")
    with TestClient(create_app(world.settings)) as c:
        # the supervisor's queue today: 3 flags of unit 12, all new, due in 14 days
        c.post(
            "/signin",
            data={"token": world.tokens["sgt12"]},
            headers={"Origin": "http://testserver"},
        )
        page = c.get("/flags", params={"agency": "demo"}).text
        assert "Your review queue in demo" in page
        assert (
            "3 new, due later</a> · <strong>0 due soon</strong>" in page and ">0 overdue<" in page
        )
    # the flags of OLD were raised 20 days ago, those of NEW 12 days ago (due in 2 days)
    with world.db.write() as s:
        for day, back in ((OLD, 20), (NEW, 12)):
            s.execute(
                update(ScoringRun)
                .where(ScoringRun.agency == "demo", ScoringRun.as_of_date == day)
                .values(scored_at=utcnow() - dt.timedelta(days=back))
            )
    assert _run("notify", "--smtp", "--smtp-url", url)[0] == 0
    assert len(inbox.of("escalation")) == 1
    with TestClient(create_app(world.settings)) as c:
        c.post(
            "/signin",
            data={"token": world.tokens["sgt12"]},
            headers={"Origin": "http://testserver"},
        )
        page = c.get("/flags", params={"agency": "demo"}).text
        # unit 12: a1 and m2 at OLD overdue, a1 at NEW due soon
        assert (
            "0 new, due later</a> · <strong>1 due soon</strong>" in page and ">2 overdue<" in page
        )
        c.cookies.clear()
        c.post("/signin", data={"token": token}, headers={"Origin": "http://testserver"})
        page = c.get("/flags", params={"agency": "demo"}).text
        assert "Queues of the supervisors of your units" in page
        assert '<td>sgt.ray</td><td>7</td><td>0</td><td>2</td><td><strong class="overdue">2' in page
        assert "2 flags escalated to you so far" in page
        assert "sgt.lee" not in page  # unit 12 is not the commander's
        c.cookies.clear()
        c.post(
            "/signin",
            data={"token": world.tokens["reviewer"]},
            headers={"Origin": "http://testserver"},
        )
        page = c.get("/timeliness", params={"agency": "demo"}).text
        assert "Notices sent (ews notify)" in page
        assert "escalations: 1 (naming 2 overdue flags)" in page
        assert "<td>escalation</td><td>cmdr.7</td><td>smtp</td><td>2</td>" in page


def test_commander_units_from_an_assignment_kind(world: Any, ews_home: Path) -> None:
    from ews.ingest import ingest_package
    from ews.store import Workspace

    pkg = ews_home.parent / "pkg"
    pkg.mkdir()
    ids = ["a1", "a2", "b1", "b2", "m1", "m2"]
    (pkg / "officers.csv").write_text(
        "officer_id,appointed_date\n" + "".join(f"{o},2010-01-04\n" for o in ids)
    )
    (pkg / "events.csv").write_text(
        "event_id,officer_id,event_type,event_date\ne1,b1,use_of_force,2023-02-01\n"
    )
    (pkg / "assignments.csv").write_text(
        "officer_id,kind,value,start_date,end_date\n"
        "b1,district,D7,2020-01-01,\n"
        "m1,district,D7,2020-01-01,2023-06-30\n"  # ended before the newest date: not counted
        "m2,district,D7,2023-12-31,\n"  # held on the day before NEW: counted (now unit 12)
        "a1,district,D12,2020-01-01,\n"
    )
    ingest_package(pkg, "demo", workspace=Workspace(ews_home))
    code, out = _run(
        "users", "add", "cmdr.d7", "--role", "commander", "--agency", "demo",
        "--units-from", "district=D7",
    )  # fmt: skip
    assert code == 0, out
    assert "district=D7 on 2023-12-31: units 12, 7" in out
    code, out = _run("users", "list")
    assert "cmdr.d7\tcommander\tagency=demo units=12,7" in out
    code, out = _run("users", "update", "cmdr.d7", "--units-from", "district=D12")
    assert code == 0 and "units 12" in out
    with world.db.session() as s:
        entry = s.scalars(
            select(AuditLog).where(AuditLog.resource == "ews users update cmdr.d7")
        ).one()
    assert entry.detail["units_from"] == "district=D12"
    assert entry.detail["after"] == {"units": ["12"]}
    for bad in ("district", "unit=7", "district=NOWHERE"):
        assert _run("users", "update", "cmdr.d7", "--units-from", bad)[0] == 2


def test_one_run_at_a_time(world: Any, smtp: tuple[Inbox, str]) -> None:
    from ews.notify import run_lock

    inbox, url = smtp
    _emails()
    with run_lock(world.db, world.settings.home):  # another `ews notify` is running
        code, out = _run("notify", "--smtp", "--smtp-url", url)
        assert code == 1 and "another `ews notify` is running" in out
        assert _run("notify", "--dry-run")[0] == 0  # a dry run sends nothing: no lock
    assert not inbox.messages
    assert _run("notify", "--smtp", "--smtp-url", url)[0] == 0
    assert len(inbox.of("new_flags")) == 2


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = folder / "cert.pem", folder / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_pem, key_pem


def test_starttls_and_credentials(
    world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    monkeypatch.setenv("EWS_SMTP_TIMEOUT", "5")
    from aiosmtpd.smtp import AuthResult

    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        login, password = data.login.decode(), data.password.decode()
        logins.append((login, password))
        return AuthResult(success=(login, password) == ("ews", "s3cret/with:odd@chars"))

    inbox, port = Inbox(), _free_port()
    ctl = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    ctl.start()
    try:
        _emails()
        base = f"127.0.0.1:{port}?starttls=1&cafile={cert}"
        # no STARTTLS: the server refuses, nothing is marked sent
        code, out = _run("notify", "--smtp", "--smtp-url", f"smtp://{base.split('?')[0]}")
        assert code == 1 and "not marked sent" in out and not inbox.messages
        password = "s3cret%2Fwith%3Aodd%40chars"  # percent-encoded in the URL
        code, out = _run("notify", "--smtp", "--smtp-url", f"smtp://ews:{password}@{base}")
        assert code == 0, out
        assert len(inbox.of("new_flags")) == 2
        assert logins[-1] == ("ews", "s3cret/with:odd@chars")
    finally:
        ctl.stop()

"""An audit entry in words for the reviewers' audit log page: "read 23 officers' flags",
"moved officer a1's flag of 2024-01-01 from new to under review"; the page keeps the full
JSON of the entry's detail behind a disclosure."""

from __future__ import annotations

from typing import Any


def _words(value: Any) -> str:
    return str(value).replace("_", " ")


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def describe(entry: dict[str, Any]) -> str:
    """One sentence for an audit entry (``action``, ``resource``, ``officer_id`` and the
    ``detail`` dict of :func:`api.routes.audit.audit_entries`)."""
    action = str(entry.get("action") or "")
    detail = entry.get("detail") or {}
    if not isinstance(detail, dict):
        detail = {}
    officer = entry.get("officer_id")
    view = detail.get("view")
    day = detail.get("as_of")
    on = f" of {day}" if day else ""
    if action == "sign_in":
        return "signed in"
    if action == "sign_in_failed":
        return f"a sign-in failed ({_words(detail.get('why') or 'no reason recorded')})"
    if action == "write" and "to" in detail:
        who = f"officer {officer}'s flag" if officer else "a flag"
        return f"moved {who}{on} from {_words(detail.get('from'))} to {_words(detail.get('to'))}"
    if action in ("not_found", "denied", "refused"):
        what = {
            "not_found": "not found or out of scope",
            "denied": "refused: not the role's",
            "refused": "refused",
        }[action]
        why = detail.get("why")
        return f"{what}{f' ({why})' if why and why != 'missing or outside scope' else ''}"
    if action == "read":
        if "replay_of" in detail:
            return f"repeated a review step already recorded (entry {detail['replay_of']})"
        if view == "flag list":
            n = len(detail.get("officers") or [])
            who = "1 officer's" if n == 1 else f"{n} officers'"
            return f"read {who} flags{on}"
        if view == "audit log":
            return f"read {_n(int(detail.get('rows') or 0), 'audit entry', 'audit entries')}"
        if view == "audit verify":
            return "verified the audit chain" + ("" if detail.get("ok", True) else ": BROKEN")
        if view == "drift history":
            return f"read the drift history ({_n(int(detail.get('rows') or 0), 'check', 'checks')})"
        if view:
            return f"read the {_words(view)}{on}"
        if officer:
            return f"read officer {officer}'s flag{on}"
    if action == "write" and view:
        return f"rebuilt the {_words(view)}"
    if action == "write" and "drift_run" in detail:
        alert = "ALERT" if detail.get("alert") else "no alert"
        return f"checked drift of {detail.get('model')}{on}: {alert}"
    if action == "admin":
        user, role = detail.get("user"), detail.get("role")
        whom = f" for {user}" + (f" ({_words(role)})" if role else "") if user else ""
        return f"ran {entry.get('resource')}{whom}"
    rest = ", ".join(f"{_words(k)} {v}" for k, v in detail.items() if not isinstance(v, list))
    return f"{_words(action)}{f' ({rest})' if rest else ''}"

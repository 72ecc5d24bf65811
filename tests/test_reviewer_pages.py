"""The reviewers' pages' figures for people: flag rates by group in percent with Wilson
intervals against the four-fifths line (a group of 24 officers with 1 flag is uncertain, not
a verdict), and audit entries in words."""

from __future__ import annotations

import math

from api.audit_words import describe
from models.audit import four_fifths_table


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def test_four_fifths_with_intervals() -> None:
    groups = [
        {"group": "A", "officers": 500, "flagged": 40, "flag_rate": 40 / 500},
        {"group": "B", "officers": 400, "flagged": 12, "flag_rate": 12 / 400},
        {"group": "C", "officers": 24, "flagged": 1, "flag_rate": 1 / 24},
        {"group": "D", "officers": 300, "flagged": 21, "flag_rate": 21 / 300},
        {"group": "E", "officers": 7},  # under min_group: size only
    ]
    t = four_fifths_table(groups, min_group=20)
    rows = {r["group"]: r for r in t["rows"]}
    assert t["highest"] == 0.08 and math.isclose(t["line"], 0.064)
    for g in ("A", "B", "C", "D"):
        low, high = _wilson(rows[g]["flagged"], rows[g]["officers"])
        assert math.isclose(rows[g]["low"], low, rel_tol=1e-4)
        assert math.isclose(rows[g]["high"], high, rel_tol=1e-4)
    assert rows["A"]["verdict"] == "pass" and rows["A"]["highest"]
    assert rows["B"]["verdict"] == "fail" and rows["B"]["sure"]  # 3.0%, interval under 6.4%
    assert rows["C"]["verdict"] == "fail" and not rows["C"]["sure"]  # 1 of 24: cannot tell
    assert rows["D"]["verdict"] == "pass" and math.isclose(rows["D"]["ratio"], 0.875)
    assert rows["E"]["verdict"] == "too few officers" and "rate" not in rows["E"]


def test_audit_entries_in_words() -> None:
    read = {
        "action": "read",
        "detail": {
            "view": "flag list",
            "as_of": "2022-01-01",
            "officers": [str(i) for i in range(23)],
        },
    }
    assert describe(read) == "read 23 officers' flags of 2022-01-01"
    one = {"action": "read", "detail": {"view": "flag list", "officers": ["a1"]}}
    assert describe(one) == "read 1 officer's flags"
    step = {
        "action": "write",
        "officer_id": "a1",
        "detail": {"from": "new", "to": "under_review", "as_of": "2024-01-01"},
    }
    assert describe(step) == "moved officer a1's flag of 2024-01-01 from new to under review"
    assert describe({"action": "sign_in", "detail": {}}) == "signed in"
    assert describe({"action": "read", "officer_id": "a1", "detail": {"as_of": "2024-01-01"}}) == (
        "read officer a1's flag of 2024-01-01"
    )
    refused = {"action": "not_found", "detail": {"why": "missing or outside scope"}}
    assert describe(refused) == "not found or out of scope"

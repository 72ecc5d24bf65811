"""schemathesis over the whole OpenAPI document of the service, in-process (ASGI), bounded and
seeded, every generated request sent as several roles, on SQLite and on PostgreSQL.

For every operation of the document the app serves at /openapi.json, schemathesis generates
cases in its examples, coverage (boundary values, every kind of invalid input, methods the path
does not have) and fuzzing phases (valid and invalid input, ``MAX_EXAMPLES`` per operation,
seed ``SEED``, no example database: the same cases on every run and on both databases). The
cases go straight to the ASGI app (no server, no network) with a role's bearer token, against a
world of two agencies with flags (``tests._service``): valid input as every role in ``ROLES``,
invalid input as the most and the least limited role, an undeclared method as one role. The
parameters the coverage phase fills with a placeholder ('a', '0', '2000-01-01'), half of the
fuzzed ones and the cross-field rules of review bodies are aimed at records that exist, so
that 200s, 201s and 409s are checked too, not only 404s and 422s.

Every answer must be: no server error (5xx, or the app raising), a status code the document
declares for the operation, the declared content type and headers, a body that conforms to the
declared schema, and a 4xx for input the document calls invalid.

The counts (cases, requests, statuses per role, failures per check) are printed per database at
the end of the module, for a closing note. A failing case is replayed while Hypothesis shrinks
it; the replays are counted too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis import checks as st_checks
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi as st_asgi

from api.app import create_app
from ews.settings import Settings
from tests._service import NEW, World, auth, build_world

# a supervisor of unit 12, a reviewer of agency demo, a reviewer of agency other,
# a data scientist of demo, an admin
ROLES = ("sgt12", "reviewer", "reviewer_other", "ds", "admin")
NEGATIVE_ROLES = ("sgt12", "admin")
SEED = 20260312
MAX_EXAMPLES = 12  # fuzzing-phase cases per operation; the coverage phase adds its own

CHECKS = {
    "not_a_server_error": st_checks.not_a_server_error,
    "status_code_conformance": st_checks.status_code_conformance,
    "content_type_conformance": st_checks.content_type_conformance,
    "response_schema_conformance": st_checks.response_schema_conformance,
    "response_headers_conformance": st_checks.response_headers_conformance,
    # invalid input (by the document) is refused with a 4xx, never served
    "negative_data_rejection": st_checks.negative_data_rejection,
}

# values that exist in the world, so that generated requests also reach records
KNOWN_AGENCIES = ("demo", "other")
KNOWN_OFFICERS = ("a1", "a2", "b1", "b2", "m1", "m2", "x1", "nobody")
FILLERS = (  # (parameter, the coverage phase's filler, a value of the world)
    ("agency", "a", "demo"),
    ("officer_id", "0", "a1"),
    ("as_of", "2000-01-01", NEW.isoformat()),
    ("as_of_date", "2000-01-01", NEW.isoformat()),
)


def _document() -> dict[str, Any]:
    """The app's OpenAPI document, as it serves it at /openapi.json (no database needed)."""
    app = create_app(Settings(home=Path("unused-ews-home"), database_url="sqlite://"))
    return app.openapi()


# Loaded once from the document; each test sends its cases to its own app (``case.call(app=)``).
# Not `schemathesis.pytest.from_fixture`: with pytest 9.2 its lazy schema fails on every test
# ("'Function' object has no attribute '_nodeid'", schemathesis 4.32.5).
schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["all"],
            "cache": {"enabled": False},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "mode": "all"},
        }
    ),
)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Keep the generated path, or aim at an agency and officer of the world."""
    if not path_parameters or "agency" not in path_parameters:
        return st.just(path_parameters)
    known = st.tuples(st.sampled_from(KNOWN_AGENCIES), st.sampled_from(KNOWN_OFFICERS)).map(
        lambda ao: {**path_parameters, "agency": ao[0], "officer_id": ao[1]}
    )
    return st.one_of(st.just(path_parameters), known)


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    """Keep the generated agency, or ask for one that exists."""
    if not query or "agency" not in query:
        return st.just(query)
    known = st.sampled_from(KNOWN_AGENCIES).map(lambda a: {**query, "agency": a})
    return st.one_of(st.just(query), known)


@dataclass
class Tally:
    cases: int = 0
    requests: int = 0
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failed: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    failing: list[str] = field(default_factory=list)

    def failure(self, check: str, role: str, case: Any, status: int | None = None) -> None:
        if status is not None:
            self.statuses[role][status] += 1
        self.failed[check] += 1
        body = "" if isinstance(case.body, NotSet) else f" body={case.body!r:.300}"
        self.failing.append(
            f"{check} as {role}: {case.method} {case.formatted_path} query={case.query}{body}"
        )

    def lines(self, db: str) -> list[str]:
        statuses = [
            f"  statuses as {role}: " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))
            for role, c in self.statuses.items()
        ]
        fails = ", ".join(f"{k}: {self.failed[k]}" for k in CHECKS)
        ops = ", ".join(f"{k}: {v}" for k, v in sorted(self.operations.items()))
        return [
            f"schemathesis [{db}]: {len(self.operations)} operations, {self.cases} cases, "
            f"{self.requests} requests",
            *statuses,
            f"  failed per check: {fails}",
            f"  cases per operation: {ops}",
            *(f"  FAILED {line}" for line in self.failing[:20]),
        ]


_TALLIES: dict[str, Tally] = defaultdict(Tally)


@pytest.fixture(scope="module", autouse=True)
def _print_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print()
        for db, tally in sorted(_TALLIES.items()):
            print("\n".join(tally.lines(db)))


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    w = build_world(tmp_path / "home", db_url)
    yield w
    w.db.dispose()


@pytest.fixture
def app(world: World) -> Iterator[FastAPI]:
    yield create_app(world.settings)
    # the ASGI transport keeps an app's lifespan (its database engine) until the process
    # ends: end it with the test
    st_asgi.shutdown_lifespans()


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    return _TALLIES[request.node.callspec.params["db_url"]]


def _roles(case: Any) -> tuple[str, ...]:
    """Valid input goes as every role; invalid input, where validation answers before scope
    matters, as the most and the least limited role; a method the path does not have (405,
    answered by the router) as one role."""
    if case.method != case.operation.method.upper():
        return ROLES[:1]
    if _is_negative(case):
        return NEGATIVE_ROLES
    return ROLES


def _is_negative(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode.value == "negative"


def _aim_at_records(case: Any) -> None:
    """The coverage phase fills the parameters it does not probe with the smallest valid value
    ('a', '0', '2000-01-01'); point those at an agency, an officer and a date that exist."""
    for container in (case.path_parameters, case.query, case.body):
        if not isinstance(container, dict):
            continue
        for key, filler, known in FILLERS:
            if container.get(key) == filler:
                container[key] = known


def _consistent_review(case: Any) -> None:
    """A valid review body (by the schema) may still break a rule across its fields (422):
    an intervention needs a type and a due date, nothing else has them, a dismissal needs a
    reason. Mend valid bodies so that review steps are also recorded (201, 200, 409)."""
    body = case.body
    if _is_negative(case) or not isinstance(body, dict) or "status" not in body:
        return
    if body["status"] == "intervention_assigned":
        if body.get("intervention_type") is None:
            body["intervention_type"] = "peer_support"
        if body.get("due_date") is None or body["due_date"] < body.get("as_of_date", ""):
            body["due_date"] = body.get("as_of_date") or NEW.isoformat()
    else:
        for key in ("intervention_type", "due_date"):
            if body.get(key) is not None:
                body[key] = None
    if body["status"] == "dismissed" and not str(body.get("reason") or "").strip():
        body["reason"] = "no concern found"


@schema.parametrize()
def test_every_operation_as_every_role(case: Any, app: FastAPI, world: World, tally: Tally) -> None:
    _aim_at_records(case)
    _consistent_review(case)
    tally.cases += 1
    tally.operations[case.operation.label] += 1
    errors: list[BaseException] = []
    for role in _roles(case):
        headers = auth(world.tokens[role])
        tally.requests += 1
        try:
            response = case.call(app=app, headers=headers)
        except Exception as exc:  # the app raised: any client gets a 500
            tally.failure("not_a_server_error", role, case, 500)
            exc.add_note(f"as role {role!r}")
            raise
        tally.statuses[role][response.status_code] += 1
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=headers)
            except FailureGroup as exc:
                tally.failure(name, role, case)
                exc.add_note(f"as role {role!r}")
                errors.append(exc)
    if errors:
        raise errors[0]


def test_the_document_tested_is_the_one_served() -> None:
    app = create_app(Settings(home=Path("unused-ews-home"), database_url="sqlite://"))
    assert TestClient(app).get("/openapi.json").json() == schema.raw_schema

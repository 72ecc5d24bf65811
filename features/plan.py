"""A feature build on DuckDB compiled once per process, then only run.

Building the Ibis expression of a spec and compiling it to SQL takes longer than DuckDB takes
to run it on a small agency (measured: about 2 s of CPU for the test spec, of a 2.5 s
build), and :class:`features.build.FeatureBatches` used to do it again for every batch of
dates and every build. Yet the SQL depends only on the spec, the cohort rule and the column
types of the package, never on its rows or the dates. So the build is compiled over tables of
fixed names into a :class:`Plan`: the SQL of each intermediate table read more than once
(where :func:`features.compile.features_expr` caches: the cohort, the tied officers, the
per-officer columns), created as a temporary table, and the SQL of the final query. A batch
puts its dates in ``ews_plan_dates`` and runs the plan's statements: the same SQL the Ibis
build runs, without rebuilding it. Plans are kept per process (a few specs at most).

Only for connections features.build opens itself: the fixed names would clash on a
connection shared with other work. Spark keeps the Ibis build (its stages are cached
DataFrames, not SQL).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datetime as dt

    import ibis.expr.types as ir
    import pyarrow as pa
    from ibis.backends import BaseBackend

    from features.cohort import CohortSpec
    from features.engines import Tables
    from features.spec import FeatureSpec

PREFIX = "ews_plan_"
TABLES = ("officers", "events", "assignments")
MAX_PLANS = 16  # compiled plans kept per process (one per spec and cohort rule in use)

_plans: OrderedDict[tuple[str, ...], Plan] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Plan:
    """A compiled feature build: ``stages`` (temporary table name, SELECT) run in order,
    then ``query`` gives the rows, sorted, in ``schema``."""

    stages: tuple[tuple[str, str], ...]
    query: str
    schema: pa.Schema


def bind(con: BaseBackend, tables: Tables) -> Tables:
    """The package's tables as views of fixed names on ``con`` (what plans read)."""
    import ibis

    views = {n: con.create_view(PREFIX + n, getattr(tables, n), overwrite=True) for n in TABLES}
    # the plan reads them by name: unbound tables of the same schema compile to that name
    return type(tables)(
        con=None, **{n: ibis.table(views[n].schema(), name=PREFIX + n) for n in TABLES}
    )


def plan_for(
    con: BaseBackend, tables: Tables, spec: FeatureSpec, cohort: CohortSpec | None
) -> Plan:
    """The plan of ``spec`` and ``cohort`` over ``tables`` (from :func:`bind`): compiled
    on the first call with the same spec, cohort and column types, then reused."""
    key = (
        con.name,
        spec.model_dump_json(),
        cohort.model_dump_json() if cohort is not None else "",
        *(repr(getattr(tables, n).schema()) for n in TABLES),
    )
    with _lock:
        plan = _plans.get(key)
        if plan is not None:
            _plans.move_to_end(key)
            return plan
    plan = compile_plan(con, tables, spec, cohort)
    with _lock:
        _plans[key] = plan
        while len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
    return plan


def compile_plan(
    con: BaseBackend, tables: Tables, spec: FeatureSpec, cohort: CohortSpec | None
) -> Plan:
    """Compile the build with :func:`features.compile.features_over`, naming each staged
    table ``ews_plan_stage<i>`` instead of materializing it."""
    import ibis

    from features.compile import dates_schema, features_over

    stages: list[tuple[str, str]] = []

    def stage(t: ir.Table) -> ir.Table:
        name = f"{PREFIX}stage{len(stages)}"
        stages.append((name, con.compile(t)))
        return ibis.table(t.schema(), name=name)

    dates = ibis.table(dates_schema(spec), name=PREFIX + "dates")
    expr = features_over(tables, dates, spec, cohort, stage).order_by(["as_of_date", "officer_id"])
    return Plan(tuple(stages), con.compile(expr), expr.schema().to_pyarrow())


def run_plan(
    con: BaseBackend, plan: Plan, spec: FeatureSpec, dates: Sequence[dt.date], chunk_rows: int
) -> pa.RecordBatchReader:
    """Run ``plan`` for ``dates``: the dates table and the stages replaced, then a reader of
    the final query's rows in chunks of ``chunk_rows``."""
    import pyarrow as pa

    from features.compile import date_bounds, dates_arrow

    duck: Any = con.con  # the DuckDB connection under Ibis
    rows = dates_arrow(dates, date_bounds(spec))
    duck.register("_ews_plan_dates_rows", rows)
    try:
        duck.execute(
            f"CREATE OR REPLACE TEMP TABLE {PREFIX}dates AS SELECT * FROM _ews_plan_dates_rows"
        )
    finally:
        duck.unregister("_ews_plan_dates_rows")
    for name, sql in plan.stages:
        duck.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS {sql}')
    reader = duck.execute(plan.query).to_arrow_reader(batch_size=chunk_rows)
    return pa.RecordBatchReader.from_batches(plan.schema, reader)

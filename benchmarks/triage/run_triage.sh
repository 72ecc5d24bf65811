#!/usr/bin/env bash
# Run the triage 6.0.0 peer experiment end to end from a fresh state and
# report wall seconds and precision@10% per model (mean over 4 test dates).
# Measuring setup for the peer system only (see README.md here); the source
# tables officers/events (load.py) are kept, everything triage made is dropped.
#
#   TRIAGE_PYTHON=/path/to/triage-venv/bin/python bash run_triage.sh
#   TRIAGE_REPLACE=0 ...  # = `triage experiment` without --replace: no train-matrix predictions
# Env: TRIAGE_PYTHON (a Python with triage 6.0.0), TRIAGE_WORK (output folder,
# default a new temporary one), TRIAGE_DB (database name, default triage_peer;
# it must start with "triage": this script drops what triage made in it).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PY=${TRIAGE_PYTHON:?set TRIAGE_PYTHON to a Python with triage 6.0.0 installed}
WORK=${TRIAGE_WORK:-$(mktemp -d -t triage-peer-XXXXXX)}
PROJECT=$WORK/project          # triage project path (matrices, models)
DB=${TRIAGE_DB:-triage_peer}
case "$DB" in triage*) ;; *) echo "TRIAGE_DB must start with 'triage' (got $DB)" >&2; exit 2;; esac
PSQL=(psql -h 127.0.0.1 -U postgres -d "$DB" -v ON_ERROR_STOP=1 -q)
export DATABASE_URL="postgresql://postgres@127.0.0.1:5432/$DB"
mkdir -p "$WORK"
cd "$WORK"
echo "== $(date -u '+%F %T') uptime before: $(uptime)"

# source tables must be there (python load.py loads them)
"${PSQL[@]}" -tAc "select 'source rows: officers=' || (select count(*) from officers) || ' events=' || (select count(*) from events)"

# ---- fresh state: drop everything triage created, keep the source tables
"${PSQL[@]}" <<'SQL'
set client_min_messages = warning;
-- a superset of triage's own public.nuke_triage(): every schema triage's
-- results-schema migrations create, plus whatever it put in public
drop schema if exists triage_metadata, test_results, train_results,
                      triage_production, production, features cascade;
do $$
declare r record;
begin
  -- tables: results_schema_versions, cohort_*/labels_*/ranks_*, from_obj copies ...
  for r in select tablename from pg_tables
           where schemaname = 'public' and tablename not in ('officers', 'events')
  loop
    execute format('drop table if exists public.%I cascade', r.tablename);
  end loop;
  for r in select viewname from pg_views
           where schemaname = 'public' and viewname <> 'events_by_entity'
  loop
    execute format('drop view if exists public.%I cascade', r.viewname);
  end loop;
  -- enum types (experimentrunstatus ...) and functions (get_model_group_id, nuke_triage)
  for r in select t.typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
           where n.nspname = 'public' and t.typtype = 'e'
  loop
    execute format('drop type if exists public.%I cascade', r.typname);
  end loop;
  for r in select p.oid::regprocedure as f from pg_proc p join pg_namespace n on n.oid = p.pronamespace
           where n.nspname = 'public'
  loop
    execute format('drop function if exists %s cascade', r.f);
  end loop;
end $$;
SQL
echo "schemas left: $("${PSQL[@]}" -tAc "select string_agg(nspname, ',') from pg_namespace where nspname not like 'pg_%' and nspname <> 'information_schema'")"
echo "public objects left: $("${PSQL[@]}" -tAc "select string_agg(c.relname || ':' || c.relkind::text, ',' order by c.relname) from pg_class c join pg_namespace n on n.oid=c.relnamespace where n.nspname='public' and c.relkind in ('r','v','m')") types: $("${PSQL[@]}" -tAc "select count(*) from pg_type t join pg_namespace n on n.oid=t.typnamespace where n.nspname='public' and t.typtype='e'") functions: $("${PSQL[@]}" -tAc "select count(*) from pg_proc p join pg_namespace n on n.oid=p.pronamespace where n.nspname='public'")"
rm -rf "$PROJECT"
mkdir -p "$PROJECT"

# ---- the timed run: one OpenMP thread; forests' n_jobs left at triage/sklearn default
export OMP_NUM_THREADS=1
set +e
/usr/bin/time -v -o "$WORK/time.txt" \
    "$PY" "$HERE/run_experiment.py" "$HERE/experiment.yaml" "$PROJECT" \
    > "$WORK/run.log" 2> "$WORK/run.err"
status=$?
set -e
if [ $status -ne 0 ]; then echo "RUN FAILED (exit $status); tail of run.err:"; tail -30 "$WORK/run.err"; fi
grep -E '^(triage Timechop|split |matches|MODE|PHASES)' "$WORK/run.log" || true
grep -E 'Elapsed \(wall clock\)|Maximum resident|User time|System time|Percent of CPU' "$WORK/time.txt"
wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.1f", s}' "$WORK/time.txt")
echo "WALL_SECONDS $wall (python exit $status)"
echo "== $(date -u '+%F %T') uptime after: $(uptime)"

# ---- results: precision@10% per model (mean over the test dates)
"${PSQL[@]}" <<'SQL'
\echo models trained / evaluated:
select count(*) as models,
       (select count(distinct model_id) from test_results.evaluations) as evaluated_models,
       (select count(*) from test_results.predictions) as test_predictions,
       (select count(*) from train_results.predictions) as train_predictions
from triage_metadata.models;
\echo precision@10% and recall@10% (stochastic value, mean over the test as-of dates), ROC AUC:
select m.model_group_id as mg,
       regexp_replace(m.model_type, '^.*\.', '') as model,
       m.hyperparameters::text as hyperparameters,
       count(distinct e.evaluation_start_time) as test_dates,
       round(avg(e.stochastic_value) filter (where e.metric = 'precision@' and e.parameter = '10.0_pct')::numeric, 4) as precision_at_10pct,
       round(avg(e.stochastic_value) filter (where e.metric = 'recall@' and e.parameter = '10.0_pct')::numeric, 4) as recall_at_10pct,
       round(avg(e.stochastic_value) filter (where e.metric = 'roc_auc')::numeric, 4) as roc_auc
from triage_metadata.models m
join test_results.evaluations e using (model_id)
where e.subset_hash = ''
group by 1, 2, 3 order by 1;
\echo per model and test date:
select m.model_group_id as mg, m.model_id, regexp_replace(m.model_type, '^.*\.', '') as model,
       e.evaluation_start_time::date as test_as_of, m.train_end_time::date as train_end,
       e.num_labeled_examples as n, e.num_positive_labels as pos,
       round(e.stochastic_value::numeric, 4) as precision_at_10pct
from triage_metadata.models m
join test_results.evaluations e using (model_id)
where e.metric = 'precision@' and e.parameter = '10.0_pct' and e.subset_hash = ''
order by 1, 4;
SQL
exit $status

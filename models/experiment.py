"""The experiment: train the model grid and compare it with the rules on honest temporal splits.

One YAML file (validated by pydantic before any data is read, then hashed) says everything:
which data, which features, which cohort, which labels, how to split time, which models to
try and which rules to beat. :func:`run_experiment` chains the named steps of
:mod:`models.steps`:

1. ``check_config``: the config against the feature spec and the data (rules' columns,
   labels, cohort), refused with every problem named before any work;
2. ``plan_splits``: the splits of :class:`models.splitter.TemporalSplitter` per label (no
   training label window reaches past its test date; with label maturity, the default,
   training labels count only findings known at the test date), their inner validation
   splits (``splitter.inner_splits``; 0 = no selection) and the deployment split;
3. ``build_features`` ONCE for every as-of date any split needs, with
   :func:`features.build.build_features`, the same code path scoring uses;
4. ``build_labels``: one query per label and knowledge cutoff;
5. for each label and split: ``select`` a candidate on the inner validation splits inside the
   training years (each fitted and evaluated like the split itself; mean metric minus a
   variance penalty), ``fit_candidates`` on the training dates, ``evaluate`` them on the test
   date (every prediction kept), ``compare_with_rules`` at the rules' volume; each label's
   fits run first as one batch on every core, and a training set shared by several splits is
   fitted once (:mod:`models.fitting`);
6. with ``refit_champion`` (default) when registering, the same choice on a deployment split
   as of the day after the data end, fitted on the newest training dates whose label windows
   have ended; otherwise the candidate chosen at the latest split;
7. ``register`` each label's champion (alias ``champion``), or with ``registry: all`` every
   fitted model, in the MLflow registry with everything that traces it.

The result holds one record per (label, split, method) with the keys ``test_date, label,
method, kind (rule|model), selected, flagged, tp, fp, precision, recall, auc, ap, brier,
metrics, vs_rules``; and ``selection`` says, for every choice, which dates it was made on.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

# the config types and helpers live in models.config (models.steps imports them from there);
# they are re-exported here, where callers have always found them
from models.config import (
    CONTEXT_COLUMNS,
    DEFAULT_CONFIG,
    ID_COLUMNS,
    RULE_NAMES,
    ExperimentConfig,
    ExperimentError,
    SplitterConfig,
    _json_safe,
    auto_test_dates,
    cohort_spec,
    data_end,
    label_spec,
    load_config,
    load_feature_spec,
    make_splitter,
    numeric_feature_columns,
    resolve_source,
)

if TYPE_CHECKING:
    import pandas as pd

    from ews.store import Snapshot

__all__ = [
    "CONTEXT_COLUMNS",
    "DEFAULT_CONFIG",
    "ID_COLUMNS",
    "RULE_NAMES",
    "Champion",
    "Clock",
    "ExperimentConfig",
    "ExperimentError",
    "ExperimentResult",
    "SplitterConfig",
    "auto_test_dates",
    "cohort_spec",
    "data_end",
    "label_spec",
    "load_config",
    "load_feature_spec",
    "make_splitter",
    "model_tags",
    "numeric_feature_columns",
    "progress_printer",
    "register",
    "register_champions",
    "resolve_source",
    "run_experiment",
]


@dataclass
class Champion:
    """The model chosen for one label, fitted, with what registering it needs."""

    label: str
    candidate: dict[str, Any]
    model: Any
    feature_columns: list[str]
    train_dates: list[date]
    label_known_by: date | None
    rules: dict[str, Any]
    background: pd.DataFrame
    test_metrics: dict[str, Any]
    as_of: date | None = None  # the split's test date (the deployment date for a refit)
    registered: dict[str, str] | None = None


@dataclass
class ExperimentResult:
    """What an experiment found (``to_dict`` is the JSON the report reads)."""

    config: dict[str, Any]
    config_hash: str
    agency: str
    snapshot_id: str
    spec_hash: str
    feature_columns: list[str]
    splits: list[dict[str, Any]]
    records: list[dict[str, Any]]
    selection: list[dict[str, Any]]
    champions: dict[str, Champion] = field(default_factory=dict)
    deployment: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    notes: list[str] = field(default_factory=list)
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds per step
    predictions: pd.DataFrame | None = None  # every test row's score per model
    fitted: list[Champion] = field(default_factory=list)  # the others, with register: all
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> promotion gate

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "config_hash": self.config_hash,
            "agency": self.agency,
            "snapshot_id": self.snapshot_id,
            "spec_hash": self.spec_hash,
            "feature_columns": self.feature_columns,
            "splits": self.splits,
            "records": self.records,
            "selection": self.selection,
            "champions": {
                label: {
                    "candidate": c.candidate,
                    "train_dates": [d.isoformat() for d in c.train_dates],
                    "label_known_by": c.label_known_by.isoformat() if c.label_known_by else None,
                    "registered": c.registered,
                }
                for label, c in self.champions.items()
            },
            "registered": [
                {"label": c.label, "candidate": c.candidate.get("name"), **c.registered}
                for c in [*self.champions.values(), *self.fitted]
                if c.registered
            ],
            "deployment": self.deployment,
            "gates": self.gates,
            "timings": self.timings,
            "cpu_timings": self.cpu_timings,
            "notes": self.notes,
        }

    def save(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON (NaN becomes null)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_json_safe(self.to_dict()), indent=2))
        return path

    def save_predictions(self, path: Path) -> Path | None:
        """Write every test prediction (officer, as-of date, label, method, score, outcome)
        as Parquet; None when there is none."""
        if self.predictions is None or self.predictions.empty:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        self.predictions.to_parquet(path, index=False)
        return path

    def table(self) -> pd.DataFrame:
        """The records as a frame: one row per label, test date and method."""
        import pandas as pd

        cols = ["label", "test_date", "method", "kind", "selected", "flagged", "tp", "fp"]
        cols += ["precision", "recall", "auc", "ap", "brier"]
        df = pd.DataFrame(self.records)
        return df[[c for c in cols if c in df.columns]] if not df.empty else df


# ---------------------------------------------------------------------------------------------
# the experiment: a pipeline of the named steps of models.steps


class Clock:
    """Times the named steps of a run (seconds per step, summed) and reports progress lines
    (``say``) with the time elapsed since the start."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.say = say or (lambda _line: None)
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (all its threads)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def note(self, message: str) -> None:
        self.say(f"[{self.elapsed():6.1f} s] {message}")

    @contextmanager
    def step(self, name: str, message: str | None = None) -> Iterator[None]:
        if message is not None:
            self.note(message)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            key = f"{name.replace(' ', '_')}_s"
            self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - t0, 3)
            self.cpu[key] = round(self.cpu.get(key, 0.0) + time.process_time() - c0, 3)


def progress_printer() -> Callable[[str], None]:
    """Progress lines to standard error, flushed at once (so a log shows them as they come)."""
    import sys

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return say


def run_experiment(
    config: ExperimentConfig | str | Path,
    source: Snapshot | Path | str | None = None,
    tracking: bool = True,
    progress: bool | Callable[[str], None] = True,
    features: pd.DataFrame | None = None,
) -> ExperimentResult:
    """Run an experiment (see the module docstring) and, if ``tracking``, register its models
    in MLflow. ``progress`` prints a line per step and split to standard error (or passes
    each line to a function). ``features`` may pass a prebuilt feature frame covering every
    needed as-of date; otherwise they are built once here."""
    from models import steps
    from models.gates import promotion_gate

    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    say = progress if callable(progress) else progress_printer() if progress else None
    clock = Clock(say)
    source, agency, snapshot_id = resolve_source(config, source)
    with clock.step("check config", "checking the config against the feature spec and data"):
        try:
            checked = steps.check_config(config, source)
        except steps.ConfigProblems as exc:
            raise ExperimentError(f"refused before any work:\n{exc}") from exc
    if tracking:  # MLflow's imports and store open meanwhile, on the idle core (2-3 s less)
        from models import registry

        registry.warm_up()
    deploy = tracking and config.refit_champion
    with clock.step("plan splits"):
        plan = steps.plan_splits(config, source, list(checked.labels), deploy=deploy)
    dates = plan.feature_dates()
    with clock.step("build features", f"building features for {len(dates)} as-of dates"):
        feats = steps.build_features(source, plan, checked.spec, checked.cohort, features)
    if say is not None:  # features that carry no information on this agency's data
        for line in feats.notes:
            say(line)
    with clock.step("build labels", f"building labels ({len(plan.label_requests())} queries)"):
        labels = steps.build_labels(source, plan, checked.labels, checked.cohort)
    run = _Run(config, checked, plan, feats, labels, clock)
    for label in checked.labels:
        # every choice first (each on its own validation splits, by the same rule), so that
        # each test date evaluates both its own choice and the config that is deployed
        run.choose(label)
        for sp in plan.splits[label]:
            run.outer_split(label, sp)
    for label in checked.labels:
        if plan.deploy.get(label) is not None:
            run.refit(label)
    result = run.result(agency, snapshot_id)
    for label, champ in result.champions.items():
        result.gates[label] = promotion_gate(result.records, label, champ.candidate["name"])
    n = len(result.champions) + len(result.fitted)
    if tracking and n:
        with clock.step("register", f"registering {n} models in MLflow"):
            register(result)
    elif tracking:
        result.notes.append("nothing registered: no model was chosen (use registry: all)")
    clock.note("done")
    result.timings = {**clock.timings, "total_s": round(clock.elapsed(), 3)}
    result.cpu_timings = {**clock.cpu, "total_s": round(time.process_time() - clock.cpu_started, 3)}
    return result


class _Run:
    """The loop over splits: for each, select on its validation splits, fit the candidates,
    evaluate them, compare them with the rules; keeps what the result needs."""

    def __init__(
        self,
        config: ExperimentConfig,
        checked: Any,
        plan: Any,
        features: Any,
        labels: Any,
        clock: Clock,
    ) -> None:
        self.config, self.checked, self.plan = config, checked, plan
        self.features, self.labels, self.clock = features, labels, clock
        self.records: list[dict[str, Any]] = []
        self.selection: list[dict[str, Any]] = []
        self.champions: dict[str, Champion] = {}
        self.deployment: list[dict[str, Any]] = []
        self.fitted: list[Champion] = []
        self.notes: list[str] = []
        self.rule_notes: dict[str, list[str]] = {}  # a rule's warning -> the test dates
        self.parts: list[pd.DataFrame] = []
        self.choices: dict[str, dict[date, str | None]] = {}  # label -> test date -> choice
        self.deploy_choice: dict[str, tuple[Any, dict[str, Any], list[Any]]] = {}
        self.deployed: dict[str, str | None] = {}  # label -> the config registered
        from models.fitting import Fitter

        # each (training set, candidate) fitted once per run, EWS_THREADS at a time
        self.fitter = Fitter(
            features,
            labels,
            checked.candidates,
            uses=Fitter.plan_uses(plan),
            on_fit=self.tick,
            cache=_fit_cache_on(),
        )
        self.total = self.fitter.planned_fits(plan)  # distinct fits, the final refits too
        self.done = 0
        self.last_note = clock.elapsed()
        self.n_splits = sum(len(v) for v in plan.splits.values())
        self.split_no = 0
        self.fits_started = clock.elapsed()

    def tick(self, _name: str = "") -> None:
        self.done += 1
        if self.clock.elapsed() - self.last_note >= 30:  # never silent for long
            self.clock.note(f"fitting{self.remaining()}")

    def prefit(self, label: str) -> None:
        """Fit the candidates on every training set ``label``'s splits need (inner,
        deployment inner and outer; each once) in one parallel batch, so the cores stay busy
        across splits; the steps then find them fitted."""
        plan = self.plan
        jobs = [(label, sp) for sp in plan.deploy_inner.get(label, [])]
        for sp in plan.splits[label]:
            jobs += [(label, i) for i in plan.inner[label][sp.test_as_of]] + [(label, sp)]
        with self.clock.step("fit candidates"):
            self.fitter.prefit(jobs)

    def remaining(self) -> str:
        self.last_note = self.clock.elapsed()
        if not self.done:
            return ""
        per_fit = (self.clock.elapsed() - self.fits_started) / self.done
        left = per_fit * (self.total - self.done)
        return f"; {self.done}/{self.total} fits, about {left:.0f} s left"

    def select(self, label: str, inner: list[Any]) -> tuple[Any, dict[str, Any], list[Any]]:
        """The decision among the grid on ``inner`` validation splits (see
        :func:`models.steps.decide`), the scores and the splits used."""
        from models import steps
        from models.grid import simplicity_key

        cands = self.checked.candidates
        with self.clock.step("select"):
            per_split, used = steps.validation_metrics(
                inner,
                label,
                self.features,
                self.labels,
                cands,
                self.config,
                self.tick,
                fitter=self.fitter,
            )
            decision, scores = steps.decide(
                per_split,
                [c.name for c in cands],
                self.config.selection_metric,
                self.config.selection_penalty,
                [c.name for c in sorted(cands, key=simplicity_key)],
            )
        return decision, scores, used

    def choose(self, label: str) -> None:
        """Every choice of ``label``: one per evaluated split, on its validation splits, and
        the deployment's, on the deployment split's; the deployed config is the deployment's
        choice (without a deployment split, the latest split's)."""
        config = self.config
        self.choices[label] = {}
        self.prefit(label)
        for sp in self.plan.splits[label]:
            inner = self.plan.inner[label][sp.test_as_of]
            if not inner:
                continue
            self.clock.note(
                f"{label} {sp.test_as_of}: choosing on {len(inner)} validation split(s)"
            )
            decision, scores, used = self.select(label, inner)
            self.choices[label][sp.test_as_of] = decision.chosen
            self.selection.append(
                {
                    "label": label,
                    "test_date": sp.test_as_of.isoformat(),
                    "chosen": decision.chosen,
                    "metric": config.selection_metric,
                    "penalty": config.selection_penalty,
                    "label_lag": config.splitter.lag_for(label),
                    "scores": scores,
                    "decision": decision.as_dict(),
                    "inner_splits": used,
                    "made_on": "training years only",
                }
            )
        deploy = self.plan.deploy.get(label)
        if deploy is not None:
            self.clock.note(f"{label}: choosing the config to deploy as of {deploy.test_as_of}")
            decision, scores, used = self.select(label, self.plan.deploy_inner[label])
            if decision.chosen is not None:
                self.deploy_choice[label] = (decision, scores, used)
                self.deployed[label] = decision.chosen
                return
            self.notes.append(f"{label}: no validation split to choose the deployed config on")
        if self.plan.splits[label]:
            self.deployed[label] = self.choices[label].get(self.plan.splits[label][-1].test_as_of)

    def outer_split(self, label: str, sp: Any) -> None:
        from models import steps

        config, cands = self.config, self.checked.candidates
        self.split_no += 1
        chosen = self.choices[label].get(sp.test_as_of)
        deployed = self.deployed.get(label)
        self.clock.note(
            f"{label} {sp.test_as_of} (split {self.split_no}/{self.n_splits}): "
            f"{len(cands)} candidates, {len(sp.train_as_of)} training dates"
            + (f"; chosen {chosen}" if chosen else "")
            + (f", deployed {deployed}" if deployed and deployed != chosen else "")
        )
        with self.clock.step("fit candidates"):
            fit = steps.fit_candidates(
                sp, label, self.features, self.labels, cands, self.tick, fitter=self.fitter
            )
        with self.clock.step("evaluate"):
            evals = steps.evaluate(fit, config.ks, config.seed)
            self.parts.append(steps.predictions(fit, evals))
        with self.clock.step("compare with rules"):
            descriptions = {c.name: c.description_template for c in self.checked.spec.columns}
            rules = steps.fit_rules(fit, self.checked.rules, config.ks, descriptions)
            self.records += steps.split_records(
                fit, evals, rules, cands, chosen, config, deployed=deployed
            )
        errors = [f"{label}: rule {r.name} not fitted: {r.error}" for r in rules if r.error]
        for note in errors + steps.rule_notes(rules, label):  # said once, with its dates
            self.rule_notes.setdefault(note, []).append(sp.test_as_of.isoformat())
        fitted_rules = {r.name: r.rule for r in rules if r.rule is not None}
        last = sp is self.plan.splits[label][-1]
        for cand in cands:
            model = fit.models.get(cand.name)
            if model is None:
                continue
            if cand.name == deployed and last:
                champ = _champion(label, cand, model, fit, sp, fitted_rules, config)
                champ.test_metrics = evals[cand.name].metrics
                self.champions[label] = champ
            elif config.registry == "all":
                other = _champion(label, cand, model, fit, sp, fitted_rules, config)
                other.test_metrics = evals[cand.name].metrics
                self.fitted.append(other)
        self.clock.note(f"{label} {sp.test_as_of}: evaluated{self.remaining()}")

    def refit(self, label: str) -> None:
        """Choose among the grid on the deployment split's inner validation splits, exactly
        as for every evaluated split, and fit the choice on the deployment training dates."""
        from models import steps

        deploy = self.plan.deploy[label]
        if label not in self.deploy_choice:  # nothing chosen for deployment: the latest split's
            return
        self.clock.note(f"{label}: refitting the champion as of {deploy.test_as_of}")
        decision, scores, used = self.deploy_choice[label]
        chosen = decision.chosen
        cand = next(c for c in self.checked.candidates if c.name == chosen)
        with self.clock.step("refit"):
            train = self.fitter.training_rows(label, deploy)
            fit = steps.SplitFit(
                deploy,
                label,
                train,
                train.iloc[:0],
                steps.fit_columns(train, self.features.columns),
                {},
            )
            if fit.single_class:
                self.fitter.skip(label, deploy, [cand])
                self.notes.append(f"{label}: too few outcomes to refit; champion = latest split's")
                return
            _, fitted = self.fitter.models(label, deploy, [cand], train=train)
            model = fitted[cand.name]
            rules = _fit_rules_on(fit, self.checked.rules)
        self.clock.note(f"{label}: refitted {chosen}{self.remaining()}")
        champ = _champion(label, cand, model, fit, deploy, rules, self.config)
        if label in self.champions:
            evaluated = self.champions[label]
            champ.test_metrics = evaluated.test_metrics
            if self.config.registry == "all":  # the evaluated choice is registered too
                self.fitted.append(evaluated)
        self.champions[label] = champ
        self.deployment.append(
            {
                "label": label,
                "as_of": deploy.test_as_of.isoformat(),
                "chosen": chosen,
                "scores": scores,
                "decision": decision.as_dict(),
                "inner_splits": used,
                "train_as_of": [d.isoformat() for d in deploy.train_as_of],
                "train_labels_known_by": deploy.label_known_by.isoformat()
                if deploy.label_known_by
                else None,
                "n_train": len(train),
                "made_on": "training years only (no evaluation happens at this date)",
            }
        )

    def result(self, agency: str, snapshot_id: str) -> ExperimentResult:
        """What the run found, as an :class:`ExperimentResult`."""
        config, plan, feats = self.config, self.plan, self.features
        notes = [
            "Model selection used only inner validation splits inside each split's training "
            "years; validation labels count only what was known at that split's test date."
            if plan.selects
            else "No selection (splitter.inner_splits: 0): every candidate evaluated, none chosen.",
        ]
        notes += [f"{note} (test dates {', '.join(on)})" for note, on in self.rule_notes.items()]
        first = next(iter(self.checked.labels))
        return ExperimentResult(
            config=config.model_dump(mode="json"),
            config_hash=config.hash,
            agency=agency,
            snapshot_id=snapshot_id,
            spec_hash=str(self.checked.spec.hash),
            feature_columns=feats.columns,
            splits=[
                {**sp.as_dict(), "inner": [i.as_dict() for i in plan.inner[first][sp.test_as_of]]}
                for sp in plan.splits[first]
            ],
            records=_json_safe(self.records),
            selection=_json_safe(self.selection),
            champions=self.champions,
            deployment=_json_safe(self.deployment),
            timings=self.clock.timings,
            notes=notes + self.notes,
            predictions=self.predictions(),
            fitted=self.fitted if config.registry == "all" else [],
        )

    def predictions(self) -> pd.DataFrame:
        import pandas as pd

        parts = [p for p in self.parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _fit_cache_on() -> bool:
    """Whether a run reuses a training set's fits (default; ``EWS_FIT_CACHE=0`` refits every
    split, only to measure what the cache saves or to check that it changes nothing)."""
    import os

    return os.environ.get("EWS_FIT_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def _fit_rules_on(fit: Any, rules: list[tuple[str, Any]]) -> dict[str, Any]:
    """Rules fitted on a split's training rows (no test rows needed)."""
    from models.rules import make_rule

    out = {}
    for name, item in rules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            try:
                out[name] = make_rule(item).fit(fit.X_train, fit.y_train)
            except ValueError:  # a column empty on these dates: the rule is left out
                continue
    return out


def _champion(
    label: str,
    cand: Any,
    model: Any,
    fit: Any,
    split: Any,
    rules: dict[str, Any],
    config: ExperimentConfig,
) -> Champion:
    """A fitted model with what traces and explains it: its training dates and label cutoff,
    the rules fitted on the same rows, and a seeded sample of training rows as background."""
    import numpy as np

    X = fit.X_train
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(X), size=min(config.background_rows, len(X)), replace=False))
    return Champion(
        label=label,
        candidate=cand.describe(),
        model=model,
        feature_columns=list(X.columns),
        train_dates=list(split.train_as_of),
        label_known_by=split.label_known_by,
        rules=rules,
        background=X.iloc[idx].reset_index(drop=True),
        test_metrics={},
        as_of=split.test_as_of,
    )


def model_tags(result: ExperimentResult, champ: Champion) -> dict[str, Any]:
    """The trace tags of one registered model: where its data, features, config and seed come
    from, its training dates and its label cutoff (the last date whose outcomes it saw)."""
    return {
        "ews.agency": result.agency,
        "ews.snapshot_id": result.snapshot_id,
        "ews.spec_hash": result.spec_hash,
        "ews.config_hash": result.config_hash,
        "ews.seed": champ.candidate.get("seed"),
        "ews.label": champ.label,
        "ews.candidate": champ.candidate.get("name"),
        "ews.train_dates": ",".join(d.isoformat() for d in champ.train_dates),
        "ews.label_known_by": champ.label_known_by.isoformat() if champ.label_known_by else "",
        "ews.as_of": champ.as_of.isoformat() if champ.as_of else "",
    }


def register(result: ExperimentResult, uri: str | None = None) -> dict[str, dict[str, str]]:
    """Register each label's champion (alias ``champion`` if it passed its promotion gate,
    :mod:`models.gates`; else no alias, the gate's verdict in its tags) and, with
    ``register: all``, every other fitted model (no alias), each with its trace tags, the
    experiment config, the fitted rules, a background sample and the results. Returns
    label -> champion's registration."""
    from models import registry

    payload = _json_safe(result.to_dict())
    from models.gates import gate_tags

    def alias(c: Champion) -> str | None:  # the alias only through the promotion gate
        gate = result.gates.get(c.label)
        return registry.CHAMPION if gate is None or gate.get("passed") else None

    entries: list[tuple[Champion, str | None]] = [(c, alias(c)) for c in result.champions.values()]
    entries += [(c, None) for c in result.fitted]
    versions = registry.register_models(
        [
            registry.ModelEntry(
                model=c.model,
                name=registry.model_name(result.agency, c.label),
                example=c.background,
                tags={
                    **model_tags(result, c),
                    **(
                        gate_tags(result.gates[c.label])
                        if c.label in result.gates and result.champions.get(c.label) is c
                        else {}
                    ),
                },
                rules=c.rules,
                background=c.background,
                params={"candidate": c.candidate.get("name"), **c.candidate.get("params", {})},
                metrics={
                    k.replace("%", "pct").replace("@", "_at_"): v
                    for k, v in c.test_metrics.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                },
                alias=alias,
            )
            for c, alias in entries
        ],
        config=result.config,
        results=payload,
        uri=uri,
        run_name=f"ews-{result.agency}-{result.config_hash}",
    )
    for (champ, given), reg in zip(entries, versions, strict=True):
        champ.registered = {**reg, "alias": given or ""}
    return {label: c.registered for label, c in result.champions.items() if c.registered}


#: the former name of :func:`register`
register_champions = register

"""Fitting the grid for one experiment run: each (training set, candidate) fitted once, the
fits spread over the machine's cores.

Why a cache: the splits of a run overlap. The inner validation split "train on the dates up
to 2011 with labels known by 2012, validate on 2012" belongs to the test date 2013 and again
to 2014, and the inner split of 2014 that validates on 2013 trains on exactly the rows of the
outer split tested at 2013. Fitting each of them again gives the same model (every
candidate is seeded), so a run fits each distinct training set once.

What defines a fit, and so the key it is cached under (:func:`train_key`,
:func:`candidate_key`): the label, the training as-of dates and the date the training labels
are known by (together they decide the training rows and their labels: within one run the
feature rows and the label frames are fixed), the columns (decided by those rows), the
candidate (name, estimator, parameters, seed, calibration) and the group it is fitted with
(random forests that differ only in ``max_depth`` are cut from one forest,
:mod:`models.forest`, which is a different model from a forest grown to that depth alone).
Nothing about the test or validation date is in the key: a fitted model does not depend on
what it is evaluated on. A :class:`Fitter` lives for one run and is dropped with it; a
model leaves the cache after its last planned use (``uses``), so memory holds only fits
still to be reused.

Why processes: each fit runs on one core with one BLAS/OpenMP thread
(:func:`threadpoolctl.threadpool_limits`), and ``threads`` fits run at once in joblib's loky
worker processes (``EWS_THREADS``, default every core). A fit never depends on how many
run beside it: it sees the same rows, in the same memory layout (the training matrix is
handed to the workers as a float64 ``.npy`` file they map read-only), the same seed and one
thread, so the models, and every figure, are the same for 1 or N threads and with the cache
on or off (tests/test_models_fitting.py checks both). HistGradientBoosting on several
OpenMP threads would also sum its gradients in another order; one thread per fit avoids
that and the oversubscription of N workers x N OpenMP threads on N cores. A batch of only
forests and logistic regressions (:data:`THREAD_KINDS`) needs no workers: it is fitted in
this process, each forest on ``threads`` threads (scikit-learn builds trees without the GIL,
and the trees do not depend on the number of threads), the same models as in the workers.

One queue per run (:meth:`Fitter.start`): a run queues the fits of every label's training
sets before it selects anything, label by label in the order it will ask for them and the
costliest first within a label, in a worker pool of its own. The workers then fit the
next labels while the run selects, evaluates and compares the rules on the first (work
of the parent process that used to leave a core idle), and no core waits at the end of a
label's batch for that batch's last fit. A set still fitting is waited for where it is
asked for. The HistGradientBoosting candidates of one set go to a worker as one task and
share their train/validation split and binning (:mod:`models.shared_binning`: the same
models, a fifth less CPU for the second one). ``EWS_FIT_LOG=file`` appends each fit
group's training set, wall and CPU seconds, worker and start time to ``file`` (JSON
lines) when the run ends: the profile of a run's fits.

Float64 stays: both learners of the shipped grids convert their input to float64 anyway
(scikit-learn's HistGradientBoosting bins float64 values, lbfgs logistic regression works in
float64), so float32 matrices would only round the features first (and change the bins of
ratio features) for no speed, and a float32 background sample would change the registered
model's input signature.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from models.grid import Candidate
    from models.splitter import Split
    from models.steps import Features, Labels

__all__ = ["Fitter", "TrainKey", "candidate_key", "default_threads", "train_key"]

#: (label, training as-of dates, training labels known by): what decides a training set
TrainKey = tuple[str, tuple[date, ...], date | None]

# Rough relative cost of one fit per training row, to start the longest fits first (so no
# long fit is left to run alone at the end of a batch); measured on Chicago's 150k rows.
_COST = {
    "logistic_regression": 1.0,
    "hist_gradient_boosting": 3.0,
    "lr_hgb_vote": 4.0,
    "extra_trees": 6.0,
    "random_forest": 10.0,
    "gradient_boosting": 20.0,
}


#: the training rows (summed over a batch's fits) from which fits run in worker processes
PARALLEL_MIN_ROWS = 200_000

#: Kinds whose fits never need worker processes: a forest's trees are built by scikit-learn
#: with the GIL released, ``n_jobs`` threads of this process at once (the same trees for any
#: number of threads: each tree's seed is drawn before they are dispatched), and a logistic
#: regression is a fraction of a second on one thread. A batch made only of these is fitted
#: in-process: two worker processes cost more than their fits on small agencies
#: (triage-peer: 8.6 CPU-s of the run's 37, their imports, the matrices written and every
#: forest pickled back).
THREAD_KINDS = frozenset({"random_forest", "extra_trees", "logistic_regression"})


def _day(d: date) -> Any:
    import pandas as pd

    return pd.Timestamp(d)


def default_threads() -> int:
    """``EWS_THREADS`` (settings), at least one."""
    from ews.settings import get_settings

    return max(1, int(get_settings().threads))


def train_key(label: str, split: Split) -> TrainKey:
    """What decides a split's training rows and labels within one run (see the module
    docstring): the label, the training as-of dates and the training labels' cutoff."""
    return (label, tuple(split.train_as_of), split.label_known_by)


def candidate_key(cand: Candidate) -> str:
    """Everything that defines a candidate's estimator: name, kind, parameters, seed and
    calibration (the name alone does not hold the seed or the calibration)."""
    return json.dumps(
        {**cand.describe(), "calibration_cv": cand.calibration_cv}, sort_keys=True, default=repr
    )


def fit_groups(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """The candidates as they are fitted: random forests that differ only in ``max_depth``
    together (one fit, the others cut from it, :func:`models.forest.fit_candidates`), every
    other candidate alone; in grid order of each group's first member."""
    from models.forest import _depth_key

    groups: dict[Any, list[Candidate]] = {}
    out: list[list[Candidate]] = []
    for cand in candidates:
        key = _depth_key(cand)
        if key is None:
            out.append([cand])
        elif key in groups:
            groups[key].append(cand)
        else:
            groups[key] = [cand]
            out.append(groups[key])
    return out


def _model_key(group: Sequence[Candidate], cand: Candidate) -> tuple[str, tuple[str, ...]]:
    return (candidate_key(cand), tuple(candidate_key(c) for c in group))


def _fit_group(
    group: Sequence[Candidate], X: pd.DataFrame, y: np.ndarray, n_jobs: int
) -> dict[str, Any]:
    """Fit one group on one thread of BLAS/OpenMP (the same in a worker and in-process)."""
    from threadpoolctl import threadpool_limits

    from models.forest import fit_candidates

    for cand in group:  # loads the estimator's compiled modules (and their OpenMP) first,
        cand.build(n_jobs=1)  # so that the limit below reaches them
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return fit_candidates(group, X, y, n_jobs=n_jobs)


def _one_job(models: dict[str, Any]) -> dict[str, Any]:
    """Fitted models set to predict on one thread, as those fitted in a worker are: a
    forest's ``predict_proba`` on several threads adds its trees' probabilities in the order
    the threads finish, which changes the last bits of the scores from run to run."""
    for model in models.values():
        if "n_jobs" in model.get_params(deep=False):
            model.set_params(n_jobs=1)
    return models


def bundles(groups: Sequence[Sequence[Candidate]]) -> list[list[list[Candidate]]]:
    """The fit groups of one training set as they are sent to a worker: every
    HistGradientBoosting group of the set together (they share their split and binning,
    :mod:`models.shared_binning`), every other group alone; in the order given."""
    out: list[list[list[Candidate]]] = []
    hgb: list[list[Candidate]] | None = None
    for group in groups:
        if all(c.estimator == "hist_gradient_boosting" and c.calibration is None for c in group):
            if hgb is None:
                hgb = []
                out.append(hgb)
            hgb.append(list(group))
        else:
            out.append([list(group)])
    return out


def _fit_bundle(
    bundle: Sequence[Sequence[Candidate]], X: pd.DataFrame, y: np.ndarray, n_jobs: int
) -> list[tuple[dict[str, Any], float, float]]:
    """Fit a bundle's groups one after another on the same rows, sharing the
    HistGradientBoosting split and binning; per group its models, wall and CPU seconds."""
    from models.shared_binning import shared_hgb_binning

    out = []
    with shared_hgb_binning():
        for group in bundle:
            t0, c0 = time.perf_counter(), time.process_time()
            models = _fit_group(group, X, y, n_jobs)
            out.append((models, time.perf_counter() - t0, time.process_time() - c0))
    return out


def _fit_in_worker(
    folder: str, columns: list[str], bundle: Sequence[Sequence[Candidate]], n_jobs: int
) -> tuple[list[tuple[dict[str, Any], float, float]], int, float, float]:
    """A loky worker's task: map the training matrix its parent wrote, fit the bundle; its
    results, the worker's process id and the task's start and end (``time.time()``)."""
    import numpy as np
    import pandas as pd

    start = time.time()
    X = pd.DataFrame(np.load(Path(folder) / "X.npy", mmap_mode="r"), columns=columns, copy=False)
    y = np.load(Path(folder) / "y.npy")
    return _fit_bundle(bundle, X, y, n_jobs), os.getpid(), start, time.time()


@dataclass
class Fitted:
    """What a training set gave: the columns it fitted on, whether its labels have a single
    class (then nothing is fitted), and its fitted models by :func:`_model_key`."""

    columns: list[str]
    single_class: bool
    rows: int
    models: dict[tuple[str, tuple[str, ...]], Any] = field(default_factory=dict)


@dataclass
class _TrainSet:
    key: TrainKey
    frame: pd.DataFrame
    columns: list[str]

    def matrix(self) -> pd.DataFrame:
        from models.steps import matrix

        return matrix(self.frame, self.columns)


class Fitter:
    """Fits candidates on the training sets of one run: each (training set, candidate) once
    (``cache``), ``threads`` at a time in worker processes. See the module docstring.

    ``uses``: how often each training set will be asked for (:func:`train_key` -> count); a
    set's models leave the cache after its last use (without ``uses`` they stay for the
    run). ``on_fit(name)`` is called after each candidate is fitted (or found to need no
    fit: a single-class training set), for progress. ``on_set(key, models, X)`` is called
    when a training set fitted in this process is done, with its models by candidate name
    and its training matrix. ``cache=False`` refits every time (to measure, and to check
    that it changes nothing).
    """

    def __init__(
        self,
        features: Features,
        labels: Labels,
        candidates: Sequence[Candidate],
        *,
        threads: int | None = None,
        cache: bool = True,
        uses: dict[TrainKey, int] | None = None,
        on_fit: Callable[[str], None] | None = None,
        on_set: Callable[[TrainKey, dict[str, Any], pd.DataFrame], None] | None = None,
    ) -> None:
        self.features, self.labels = features, labels
        self.on_set = on_set
        self.candidates = list(candidates)
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self.cache = cache
        self.uses = dict(uses) if uses is not None else None
        self.on_fit = on_fit
        self.fitted: dict[TrainKey, Fitted] = {}
        self.n_fitted = 0  # candidates actually fitted (a group counts each member)
        self.n_reused = 0  # candidates taken from the cache
        self.fit_seconds = 0.0  # summed over the fits (CPU-bound: about their CPU time)
        self.rows_done = 0  # training rows summed over the fits done (the progress weight)
        # one entry per fit group: its training set, candidates, wall and CPU seconds, the
        # process that ran it and when (seconds since the fitter was made)
        self.log: list[dict[str, Any]] = []
        self._t0 = time.time()
        # fits running or queued in the workers (:meth:`start`), collected when asked for
        self._pending: dict[TrainKey, set[Any]] = {}
        self._tasks: dict[Any, tuple[TrainKey, list[list[Candidate]], Path, Fitted]] = {}
        self._folders: dict[Path, int] = {}  # a training set's folder -> its tasks left
        self._base: Path | None = None
        self._n_sets = 0  # training sets written for the workers
        self._executor: Any = None

    # ------------------------------------------------------------------ planning

    @staticmethod
    def plan_uses(plan: Any) -> dict[TrainKey, int]:
        """How often a run asks for each training set: once per split of ``plan`` (outer,
        inner and deployment, every label)."""
        uses: dict[TrainKey, int] = {}
        for label in plan.splits:
            for sp in plan.all_splits(label):
                key = train_key(label, sp)
                uses[key] = uses.get(key, 0) + 1
        return uses

    # ------------------------------------------------------------------ fitting

    def training_rows(self, label: str, split: Split) -> pd.DataFrame:
        """The split's training rows: feature rows of its training dates joined with their
        labels as known at ``split.label_known_by``."""
        from models.steps import join

        rows = self.labels.get(label, split.train_as_of, split.label_known_by)
        return join(self.features.frame, rows, split.train_as_of)

    def models(
        self,
        label: str,
        split: Split,
        candidates: Sequence[Candidate] | None = None,
        train: pd.DataFrame | None = None,
    ) -> tuple[Fitted, dict[str, Any]]:
        """The split's training set (columns, single class) and ``candidates`` (default:
        all) fitted on it, name -> model in candidate order; fitted now where the cache has
        none. ``train`` passes the training rows when the caller already built them. Counts
        as one use of the training set."""
        cands = list(candidates) if candidates is not None else self.candidates
        key = train_key(label, split)
        store: dict[TrainKey, Fitted] = self.fitted if self.cache else {}
        have = store.get(key)
        if have is not None and not have.single_class:
            self.n_reused += sum(
                _model_key(g, c) in have.models for g in fit_groups(cands) for c in g
            )
        self._fit([(label, split, cands, train)], store)
        entry = store[key]
        out: dict[str, Any] = {}
        if not entry.single_class:
            for group in fit_groups(cands):
                for cand in group:
                    out[cand.name] = entry.models[_model_key(group, cand)]
        self._used(key)
        return entry, out

    def skip(self, label: str, split: Split, candidates: Sequence[Candidate]) -> None:
        """The split needs no fit (single-class training labels, or no test rows): counted
        as one use of its training set, and its candidates as done for progress unless they
        were fitted or counted before."""
        key = train_key(label, split)
        if key not in self.fitted and self.on_fit:
            for cand in candidates:
                self.on_fit(cand.name)
        self._used(key)

    def prefit(self, jobs: Sequence[tuple[str, Split]]) -> None:
        """Fit every candidate on each (label, split)'s training set that the cache does not
        hold yet, all in one parallel batch (no use is counted); sets already fitting in the
        background (:meth:`start`) are waited for. Without the cache there is nothing to
        keep, so nothing is done ahead."""
        if not self.cache:
            return
        self._fit([(label, sp, self.candidates, None) for label, sp in jobs], self.fitted)

    def start(self, jobs: Sequence[tuple[str, Split]]) -> None:
        """Start fitting every candidate on each (label, split)'s training set in the worker
        processes and return at once: the fits run while the caller works on what is done
        (a run evaluates one label while the next is fitted), and :meth:`models` or
        :meth:`prefit` wait for a set still fitting. One queue for the whole run, so no core
        waits at the end of one label's batch for the last fit of it: the sets in the order
        of ``jobs`` by label (a run asks for them in that order), within a label the
        costliest fits first. Nothing is started without the cache, on one thread, or when
        the fits are too small for workers, or all of kinds fitted as well in this process
        (:meth:`_threads_suffice`; they are then fitted when asked for)."""
        if not self.cache:
            return
        need = self._need([(label, sp, self.candidates, None) for label, sp in jobs], self.fitted)
        n_tasks = sum(len(bundles(v[2])) for v in need.values())
        workers = min(self.threads, n_tasks)
        if not need or workers <= 1 or self._small(need) or self._threads_suffice(need):
            return
        self._submit(need, self.fitted, workers, queue=True)

    def close(self) -> None:
        """Drop what is still queued, stop the workers, remove the training matrices
        (``EWS_FIT_LOG``: append :attr:`log` to that file, one JSON line per fit group)."""
        for fut in list(self._tasks):
            fut.cancel()
        self._tasks.clear()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
        self._folders.clear()
        path = os.environ.get("EWS_FIT_LOG")
        if path and self.log:
            with open(path, "a") as fh:
                for entry in self.log:
                    fh.write(json.dumps(entry, default=str) + "\n")
            self.log = []

    def _used(self, key: TrainKey) -> None:
        if not self.cache or self.uses is None or key not in self.uses:
            return
        self.uses[key] -= 1
        if self.uses[key] <= 0:
            self.fitted.pop(key, None)
            del self.uses[key]

    def _need(
        self,
        requests: Sequence[tuple[str, Split, Sequence[Candidate], pd.DataFrame | None]],
        store: dict[TrainKey, Fitted],
    ) -> dict[TrainKey, tuple[str, Split, list[list[Candidate]], pd.DataFrame | None]]:
        """What each training set of ``requests`` still needs (its fit groups), in request
        order; a set with fits still running (:meth:`start`) needs nothing more."""
        need: dict[TrainKey, tuple[str, Split, list[list[Candidate]], pd.DataFrame | None]] = {}
        for label, sp, cands, train in requests:
            key = train_key(label, sp)
            have = store.get(key)
            if (have is not None and have.single_class) or key in self._pending:
                continue
            groups = [
                g
                for g in fit_groups(cands)
                if have is None or any(_model_key(g, c) not in have.models for c in g)
            ]
            if key in need:
                known = {tuple(candidate_key(c) for c in g) for g in need[key][2]}
                groups = [g for g in groups if tuple(candidate_key(c) for c in g) not in known]
                groups = need[key][2] + groups
                train = need[key][3] if train is None else train
            if groups:
                need[key] = (label, sp, groups, train)
        return need

    def _fit(
        self,
        requests: Sequence[tuple[str, Split, Sequence[Candidate], pd.DataFrame | None]],
        store: dict[TrainKey, Fitted],
    ) -> None:
        """Fit what ``store`` lacks for ``requests`` (after waiting for those of their sets
        still fitting in the workers): in-process with one thread, or in worker processes
        when there are several tasks and threads."""
        self._wait({train_key(label, sp) for label, sp, _, _ in requests})
        need = self._need(requests, store)
        if not need:
            return
        n_tasks = sum(len(bundles(v[2])) for v in need.values())
        workers = min(self.threads, n_tasks)
        if self._small(need) or self._threads_suffice(need):
            workers = 1  # starting workers would cost more than they save
        if workers <= 1:
            for key in sorted(need, key=lambda k: -len(k[1])):  # largest sets first
                label, sp, groups, train = need[key]
                ts = self._train_set(key, label, sp, train, store)
                if ts is None:
                    continue
                X, y = ts.matrix(), ts.frame["label"].to_numpy()
                t0 = time.time()
                for bundle in bundles(groups):
                    results = _fit_bundle(bundle, X, y, self.threads)
                    for group, (models, wall, cpu) in zip(bundle, results, strict=True):
                        self._store(store[key], group, _one_job(models), wall)
                        self._note(key, group, store[key].rows, wall, cpu, os.getpid(), t0)
                        t0 += wall
                if self.on_set is not None:
                    self.on_set(key, self._by_name(store[key]), X)
            return
        self._submit(need, store, workers, queue=False)
        self._wait(set(need))
        if not self._tasks and self._executor is None and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)  # no queue left to feed
            self._base = None

    def _by_name(self, entry: Fitted) -> dict[str, Any]:
        """A training set's fitted models by candidate name (those fitted so far)."""
        return {
            cand.name: entry.models[_model_key(group, cand)]
            for group in fit_groups(self.candidates)
            for cand in group
            if _model_key(group, cand) in entry.models
        }

    def _small(self, need: dict[TrainKey, Any]) -> bool:
        """Whether a batch is too small to be worth worker processes (their start, a second
        or two each, and writing the matrices): under about ``PARALLEL_MIN_ROWS`` training
        rows over all its fits, counted from the feature rows of each set's dates."""
        frame = self.features.frame
        per_date = frame.groupby("as_of_date", sort=False).size()
        rows = 0
        for key, (_, _, groups, _) in need.items():
            days = [_day(d) for d in key[1]]
            rows += int(per_date.reindex(days).fillna(0).sum()) * len(groups)
        return rows < PARALLEL_MIN_ROWS

    @staticmethod
    def _threads_suffice(need: dict[TrainKey, Any]) -> bool:
        """Whether every fit of a batch is of a kind fitted as well in this process
        (:data:`THREAD_KINDS`, uncalibrated): forests on ``threads`` threads, the rest on one."""
        return all(
            cand.estimator in THREAD_KINDS and cand.calibration is None
            for _, _, groups, _ in need.values()
            for group in groups
            for cand in group
        )

    def _train_set(
        self,
        key: TrainKey,
        label: str,
        sp: Split,
        train: pd.DataFrame | None,
        store: dict[TrainKey, Fitted],
    ) -> _TrainSet | None:
        """Build a training set and record it in ``store`` (None when it has a single class:
        nothing to fit; its candidates are counted as done for progress)."""
        import numpy as np

        from models.steps import fit_columns

        frame = self.training_rows(label, sp) if train is None else train
        columns = fit_columns(frame, self.features.columns)
        single = len(np.unique(frame["label"].to_numpy())) < 2
        entry = store.get(key)
        if entry is None:
            entry = store[key] = Fitted(columns=columns, single_class=single, rows=len(frame))
        if single:
            for cand in self.candidates:
                self.rows_done += len(frame)
                if self.on_fit:
                    self.on_fit(cand.name)
            return None
        return _TrainSet(key, frame, columns)

    def _store(
        self, entry: Fitted, group: Sequence[Candidate], models: dict[str, Any], seconds: float
    ) -> None:
        for cand in group:
            entry.models[_model_key(group, cand)] = models[cand.name]
            self.n_fitted += 1
            self.rows_done += entry.rows
            if self.on_fit:
                self.on_fit(cand.name)
        self.fit_seconds += seconds

    def _note(
        self,
        key: TrainKey,
        group: Sequence[Candidate],
        rows: int,
        wall: float,
        cpu: float,
        pid: int,
        start: float,
    ) -> None:
        self.log.append(
            {
                "label": key[0],
                "train_as_of": [d.isoformat() for d in key[1]],
                "labels_known_by": key[2].isoformat() if key[2] else None,
                "rows": rows,
                "candidates": [c.name for c in group],
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "pid": pid,
                "start_s": round(start - self._t0, 3),
            }
        )

    def _schedule(
        self, need: dict[TrainKey, tuple[str, Split, list[list[Candidate]], pd.DataFrame | None]]
    ) -> list[tuple[TrainKey, list[list[Candidate]]]]:
        """The tasks (training set, bundle of fit groups) in the order they are queued: by
        label in the order asked for, within a label the costliest first (rows of the set
        times the estimators' rough cost per row, :data:`_COST`), so each label is done as
        early as it can be and the last tasks of the queue are short ones."""
        frame = self.features.frame
        per_date = frame.groupby("as_of_date", sort=False).size()
        labels: list[str] = []
        tasks: list[tuple[int, float, int, TrainKey, list[list[Candidate]]]] = []
        for key, (label, _, groups, _) in need.items():
            if label not in labels:
                labels.append(label)
            rows = int(per_date.reindex([_day(d) for d in key[1]]).fillna(0).sum())
            for bundle in bundles(groups):
                cost = rows * sum(_COST.get(g[0].estimator, 5.0) for g in bundle)
                tasks.append((labels.index(label), -cost, len(tasks), key, bundle))
        return [(key, bundle) for *_, key, bundle in sorted(tasks, key=lambda t: t[:3])]

    def _submit(
        self,
        need: dict[TrainKey, tuple[str, Split, list[list[Candidate]], pd.DataFrame | None]],
        store: dict[TrainKey, Fitted],
        workers: int,
        queue: bool,
    ) -> None:
        """Queue every task of ``need`` in the workers (:meth:`_schedule` order): with
        ``queue`` (:meth:`start`) in a pool of this fitter's own, kept until :meth:`close`
        (not joblib's shared pool, which another part of the run could resize while fits are
        queued), otherwise (a batch waited for at once) in joblib's shared loky pool, whose
        workers outlive the batch and need no closing. Each
        training set is built here once, just before its first task is queued, and written
        as ``X.npy`` / ``y.npy`` to a temporary folder that the workers map read-only (removed
        when its last task is collected)."""
        import numpy as np
        from joblib.externals.loky import ProcessPoolExecutor, get_reusable_executor

        from ews.processes import shared_temp

        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix="ews-fit-", dir=shared_temp()))
        env = {var: "1" for var in _THREAD_VARS}  # one BLAS/OpenMP thread per worker
        if not queue:
            executor = get_reusable_executor(max_workers=workers, env=env)
        else:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=workers, env=env)
            executor = self._executor
        n_jobs = max(1, self.threads // workers)
        written: dict[TrainKey, Path | None] = {}
        for key, bundle in self._schedule(need):
            if key not in written:
                label, sp, _, train = need[key]
                ts = self._train_set(key, label, sp, train, store)
                folder = None
                if ts is not None:
                    folder = self._base / str(self._n_sets)
                    self._n_sets += 1
                    folder.mkdir()
                    np.save(folder / "X.npy", ts.matrix().to_numpy())
                    np.save(folder / "y.npy", ts.frame["label"].to_numpy())
                    self._folders[folder] = 0
                written[key] = folder
                del ts
            folder = written[key]
            if folder is None:  # a single class: nothing to fit
                continue
            fut = executor.submit(_fit_in_worker, str(folder), store[key].columns, bundle, n_jobs)
            self._tasks[fut] = (key, bundle, folder, store[key])
            self._pending.setdefault(key, set()).add(fut)
            self._folders[folder] += 1

    def _wait(self, keys: set[TrainKey] | None = None) -> None:
        """Collect the fits the workers finished; block until none of ``keys`` (default:
        any) is still fitting, collecting every fit as it ends (so progress moves)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        self._collect([f for f in self._tasks if f.done()])
        while any(k in self._pending for k in (self._pending if keys is None else keys)):
            done, _ = wait(list(self._tasks), return_when=FIRST_COMPLETED)
            self._collect(done)

    def _collect(self, done: Any) -> None:
        order = {fut: i for i, fut in enumerate(self._tasks)}  # in the order queued
        for fut in sorted(done, key=lambda f: order.get(f, -1)):
            if fut not in self._tasks:
                continue
            # the set's entry, even if its last use has dropped it from the cache meanwhile
            key, bundle, folder, entry = self._tasks.pop(fut)
            pending = self._pending.get(key, set())
            pending.discard(fut)
            if not pending:
                self._pending.pop(key, None)
            self._folders[folder] -= 1
            if self._folders[folder] <= 0:
                shutil.rmtree(folder, ignore_errors=True)
                del self._folders[folder]
            results, pid, start, _ = fut.result()  # a worker's error is raised here
            for group, (models, wall, cpu) in zip(bundle, results, strict=True):
                self._store(entry, group, models, wall)
                self._note(key, group, entry.rows, wall, cpu, pid, start)
                start += wall


#: the variables that set the BLAS/OpenMP threads of a worker process
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

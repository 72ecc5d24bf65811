"""Features and labels built in a helper process while the run checks its config.

A run's first steps are serial: checking the config (which imports scikit-learn, about a
second and a half of one core) and then building the features and labels (DuckDB queries
compiled from the feature spec, about as long). Neither needs the other's result, so
:meth:`Prebuild.start` forks a process at the start of the run that builds them (with the
same functions as the run: :func:`models.steps.build_features` and
:func:`models.steps.build_labels`, on the same plan) while this process checks the config;
the run then takes them (:meth:`Prebuild.take`) instead of building them itself.

What the run uses is what it would have built: the helper sends back, with the frames, the
plan's dates and label requests, the feature spec's hash, the cohort and the label
definitions it built from, and the run takes the frames only when every one of them is the
run's own (checked after the config check, on the run's own plan). Otherwise, or when the
helper failed (a bad config, data without rows for a date: the run then meets the same
error itself, with its own message), or when the process has other threads (a fork would
copy their locks), the run builds them itself, as it always did. Nothing is written: the
helper only computes, and is stopped when the run no longer needs it."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ews.store import Snapshot
    from models.config import ExperimentConfig
    from models.steps import Checked, Features, Labels, Plan

__all__ = ["Prebuild"]


@dataclass
class _Built:
    """What the helper built, and from what (compared with the run's own before use)."""

    dates: list[Any]
    label_requests: dict[Any, set[Any]]
    spec_hash: str
    cohort: Any
    labels: dict[str, Any]
    features: Features
    label_frames: Labels


def _build(config: ExperimentConfig, source: Snapshot | Path, deploy: bool) -> _Built:
    """In the helper: the spec, cohort and labels as the config check resolves them, the
    run's plan, then the features and labels the run would build."""
    from models import steps
    from models.config import cohort_spec, label_spec, load_feature_spec

    spec = load_feature_spec(config.feature_spec)
    cohort = cohort_spec(config.cohort)
    labels = {n: label_spec(i) for n, i in zip(config.label_names(), config.labels, strict=True)}
    plan = steps.plan_splits(config, source, list(labels), deploy=deploy)
    features = steps.build_features(source, plan, spec, cohort)
    label_frames = steps.build_labels(source, plan, labels, cohort)
    return _Built(
        plan.feature_dates(),
        plan.label_requests(),
        str(spec.hash),
        cohort,
        labels,
        features,
        label_frames,
    )


def _helper(conn: Any, config: ExperimentConfig, source: Snapshot | Path, deploy: bool) -> None:
    try:
        payload = pickle.dumps(_build(config, source, deploy), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001 - the run builds them itself and reports any error
        payload = b""
    try:
        conn.send_bytes(payload)
    except (BrokenPipeError, OSError):  # the run no longer waits
        pass
    finally:
        conn.close()


class Prebuild:
    """A helper process building a run's features and labels (see the module docstring)."""

    def __init__(self, process: Any, conn: Any) -> None:
        self.process, self.conn = process, conn

    @classmethod
    @contextmanager
    def started(
        cls, config: ExperimentConfig, source: Snapshot | Path, deploy: bool, enabled: bool = True
    ) -> Iterator[Prebuild | None]:
        """Within: the helper (:meth:`start`; None when not ``enabled`` or not started),
        stopped on the way out whether or not the run took its work."""
        early = cls.start(config, source, deploy) if enabled else None
        try:
            yield early
        finally:
            if early is not None:
                early.close()

    @classmethod
    def start(
        cls, config: ExperimentConfig, source: Snapshot | Path, deploy: bool
    ) -> Prebuild | None:
        """Fork the helper; None (the run builds them itself) without ``fork`` or when this
        process runs other threads. pandas is imported first: both processes need it."""
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():
            return None
        if threading.active_count() > 1:
            return None
        import pandas  # noqa: F401  (inherited by the helper instead of imported twice)

        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_helper, args=(theirs, config, source, deploy), name="ews-prebuild", daemon=True
        )
        process.start()
        theirs.close()
        return cls(process, ours)

    def take(self, plan: Plan, checked: Checked) -> tuple[Features, Labels] | None:
        """The helper's features and labels when they were built from exactly the run's
        plan, spec, cohort and labels (waiting for it to finish); None otherwise. The helper
        is done either way."""
        try:
            payload = self.conn.recv_bytes()
        except (EOFError, OSError):
            payload = b""
        finally:
            self.close()
        if not payload:
            return None
        built: _Built = pickle.loads(payload)
        same = (
            built.dates == plan.feature_dates()
            and built.label_requests == plan.label_requests()
            and built.spec_hash == str(checked.spec.hash)
            and built.cohort == checked.cohort
            and built.labels == checked.labels
        )
        return (built.features, built.label_frames) if same else None

    def close(self) -> None:
        """Stop the helper (when the run no longer needs it) and reap it."""
        self.conn.close()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()

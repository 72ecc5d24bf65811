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
copy their locks), the run builds them itself, as it always did. Nothing is left behind:
the frames' arrays reach the run through a file already removed from its folder (in
memory-backed ``/dev/shm`` when it has room), which the run maps; the helper is stopped as
soon as the run no longer needs it. A config the check refuses is still refused before any
of the run's work: the helper's is dropped unused."""

from __future__ import annotations

import os
import pickle
import tempfile
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


def _helper(
    conn: Any, memory: int, config: ExperimentConfig, source: Snapshot | Path, deploy: bool
) -> None:
    from ews.processes import collection_paused

    try:
        try:  # a process that builds once and ends: nothing it allocates is collected
            # meanwhile (two full collections walked its imports, 0.13 CPU-s, on triage-peer)
            with collection_paused():
                parts = _send(_build(config, source, deploy), memory)
        except BaseException:  # noqa: BLE001 - the run builds them itself and reports any error
            parts = [b""]
        for part in parts:
            conn.send_bytes(part)
    except OSError:  # the run no longer waits
        pass
    finally:
        conn.close()


def _send(built: _Built, memory: int) -> list[bytes]:
    """Write the frames' arrays (pickle protocol 5's out-of-band buffers) one after another
    to the file ``memory`` (a file descriptor, see :meth:`Prebuild.start`); the parts of the
    message that follows them through the pipe: their sizes, then the pickle without them.
    A large agency's feature frame (Chicago's: 330 MB) is then neither copied into a pickle
    nor pushed through the pipe: the run maps the file."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(built, protocol=5, buffer_callback=buffers.append)
    sizes = []
    for buffer in buffers:
        view = buffer.raw()
        sizes.append(view.nbytes)
        while view.nbytes:
            view = view[os.write(memory, view) :]
    return [pickle.dumps(sizes), head]


def _receive(conn: Any, memory: int) -> _Built | None:
    """What :func:`_send` sent (None: the helper failed). The arrays are read from the file
    ``memory`` mapped copy-on-write: no copy is made, and the frames are writable, as those
    the run builds itself."""
    import mmap

    sizes_message = conn.recv_bytes()
    if not sizes_message:
        return None
    head = conn.recv_bytes()
    sizes: list[int] = pickle.loads(sizes_message)
    total = sum(sizes)
    whole = memoryview(mmap.mmap(memory, total, access=mmap.ACCESS_COPY)) if total else None
    buffers: list[Any] = []
    offset = 0
    for size in sizes:
        buffers.append(whole[offset : offset + size] if whole is not None else b"")
        offset += size
    built: _Built = pickle.loads(head, buffers=buffers)
    return built


class Prebuild:
    """A helper process building a run's features and labels (see the module docstring)."""

    def __init__(self, process: Any, conn: Any, memory: int) -> None:
        self.process, self.conn, self.memory = process, conn, memory

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

        from ews.processes import shared_temp

        # where the helper writes the frames' arrays: a file in memory-backed /dev/shm when
        # it has room, removed from its folder at once (the two processes hold it open), so
        # that nothing is left behind however either of them ends
        memory, name = tempfile.mkstemp(prefix="ews-prebuild-", dir=shared_temp())
        os.unlink(name)
        ctx = multiprocessing.get_context("fork")
        ours, theirs = ctx.Pipe(duplex=False)
        try:
            process = ctx.Process(
                target=_helper,
                args=(theirs, memory, config, source, deploy),
                name="ews-prebuild",
                daemon=True,
            )
            process.start()
        except BaseException:
            os.close(memory)
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours, memory)

    def take(self, plan: Plan, checked: Checked) -> tuple[Features, Labels] | None:
        """The helper's features and labels when they were built from exactly the run's
        plan, spec, cohort and labels (waiting for it to finish); None otherwise. The helper
        is done either way."""
        try:
            built = _receive(self.conn, self.memory)
        except (EOFError, OSError):
            built = None
        finally:
            self.close()
        if built is None:
            return None
        same = (
            built.dates == plan.feature_dates()
            and built.label_requests == plan.label_requests()
            and built.spec_hash == str(checked.spec.hash)
            and built.cohort == checked.cohort
            and built.labels == checked.labels
        )
        return (built.features, built.label_frames) if same else None

    def close(self) -> None:
        """Stop the helper (when the run no longer needs it), reap it, and close the file of
        its arrays (a mapping of it stays valid)."""
        self.conn.close()
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        if self.memory >= 0:
            os.close(self.memory)
            self.memory = -1

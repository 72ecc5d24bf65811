"""What a long `ews train` has finished, kept on disk so that a stopped run loses none of it.

A run is a sequence of units of work: the choice among the grid for each test date (fitted
on its inner validation splits), each outer split's records and predictions, the choice of
the config to deploy, and the deployment refit. As each unit completes,
:class:`Checkpoint` writes it under ``OUT/checkpoint/``: a JSON file (the unit's results),
and beside it, when the unit has them, a Parquet file (its predictions) and a pickle (the
fitted models a later step registers). Every file is written to a temporary name, flushed to
disk and renamed, and the JSON is written last: a unit whose JSON exists is whole; a run
killed mid-write leaves at most a stray temporary file, never half a unit.

``manifest.json`` holds the fingerprint of what makes the units valid (:func:`fingerprint`):
the config hash, the data snapshot, the feature spec hash, whether a deployment split was
planned, and the code that computes them (the versions of ews and its numerical libraries
and a hash of the ``models`` and ``features`` sources). A resumed run reuses units only
under the same fingerprint, so its results are those of an uninterrupted run; under another
fingerprint, or without ``--resume``, the checkpoint is refused (:class:`CheckpointError`),
never silently reused or overwritten. Once the run's results are written, the checkpoint is
removed (:func:`remove`), and ``checkpoint.finished.json`` beside it keeps the fingerprint
of the run that finished: ``--resume`` of that same run then says there is nothing to
resume instead of running it again from the start (and registering its models anew).

The manifest also names the run itself (:attr:`Checkpoint.identity`: the fingerprint's hash
and a random part drawn when the checkpoint is created): a resumed run has the identity of the
run it continues, another run of the same experiment has its own. Registration tags every
model version it creates with it, so that a run stopped while registering finds, when
resumed, what it had already registered (:func:`models.registry.register_models`).

The pickles are read back only from a checkpoint whose fingerprint matches, written by this
workspace's own runs; like MLflow's model files, they are trusted as the user's own files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.config import ExperimentError, _json_safe

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Unit",
    "code_version",
    "fingerprint",
    "remove",
    "summary",
]

FORMAT = 1  # the layout of the files; a checkpoint of another layout is refused
MANIFEST = "manifest.json"
#: the fingerprint's parts in words, for the error that names which ones differ
PARTS = {
    "config_hash": "config hash",
    "snapshot_id": "data snapshot",
    "spec_hash": "feature spec hash",
    "features": "feature rows",
    "deploy": "deployment split planned",
    "code": "code version",
    "format": "checkpoint format",
}


class CheckpointError(ExperimentError):
    """A checkpoint that cannot be used as asked: one exists and --resume was not given, or
    it belongs to another config, data or code (bad input: `ews train` exits 2)."""


def code_version() -> str:
    """What in the code decides a run's results: the versions of ews, scikit-learn, NumPy,
    pandas and SciPy, and a hash of the sources of ``models`` and ``features`` (any change
    to them, even a docstring, makes earlier checkpoints stale: cautious, never wrong)."""
    import features
    import models

    digest = hashlib.sha256()
    for dist in ("ews", "scikit-learn", "numpy", "pandas", "scipy"):
        try:
            digest.update(f"{dist}={metadata.version(dist)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}=?;".encode())
    for package in (models, features):
        folder = Path(str(package.__file__)).parent
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a prebuilt feature frame (passed to ``run_experiment``)."""
    import pandas as pd

    values = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(values.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def fingerprint(
    config_hash: str,
    snapshot_id: str,
    spec_hash: str,
    deploy: bool,
    features: str = "built",
) -> dict[str, str]:
    """The fingerprint of a run's units (see the module docstring)."""
    return {
        "config_hash": config_hash,
        "snapshot_id": snapshot_id,
        "spec_hash": spec_hash,
        "features": features,
        "deploy": str(bool(deploy)).lower(),
        "code": code_version(),
        "format": str(FORMAT),
    }


@dataclass
class Unit:
    """One finished unit of work as read back: its JSON data, its predictions (if any) and
    its pickled objects (if any)."""

    data: dict[str, Any]
    frame: pd.DataFrame | None = None
    objects: Any = None


def _slug(kind: str, key: tuple[str, ...]) -> str:
    """A file name for a unit: readable, safe on every file system, unique per key."""
    raw = "\x1f".join((kind, *key))
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join((kind, *key)))[:80]
    return f"{text}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file in the same folder: written, flushed to disk,
    then renamed over ``path`` (a rename within a folder is atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames) to disk, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _units(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.name != MANIFEST)


def summary(folder: Path) -> int:
    """How many finished units the checkpoint in ``folder`` holds (0 when there is none)."""
    return len(_units(folder)) if (folder / MANIFEST).is_file() else 0


def remove(folder: Path) -> None:
    """Remove the checkpoint in ``folder`` (the run's results are written): renamed away
    first (atomic), then deleted, so that a stop while its files are deleted never leaves
    a checkpoint with some of them (its manifest gone, say, and its units left for a new
    run to read back); a renamed folder left by such a stop is deleted by the next
    :meth:`Checkpoint.open` beside it."""
    folder = Path(folder)
    if not folder.exists():
        return
    try:  # what finished, for a later --resume to say so (Checkpoint.open)
        body = json.loads((folder / MANIFEST).read_text())
        finished = {"fingerprint": body["fingerprint"], "run": body.get("run")}
    except (OSError, ValueError, KeyError, TypeError):
        finished = None
    if finished is not None:
        text = json.dumps(finished, indent=2)
        _atomic(_finished(folder), lambda p: p.write_text(text))
    doomed = folder.with_name(f".{folder.name}.removing-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, doomed)
    except OSError:  # not renamable (another file system's mount point): deleted in place
        doomed = folder
    shutil.rmtree(doomed, ignore_errors=True)


def _finished(folder: Path) -> Path:
    """Where :func:`remove` notes the fingerprint of the run whose checkpoint it removed."""
    return folder.with_name(f"{folder.name}.finished.json")


def _remove_abandoned(folder: Path) -> None:
    """Delete what a stopped :func:`remove` left beside ``folder``."""
    for left in folder.parent.glob(f".{folder.name}.removing-*"):
        shutil.rmtree(left, ignore_errors=True)


def _refuse_finished(folder: Path, fp: dict[str, str]) -> None:
    """With --resume and no checkpoint: refuse when the run of this very fingerprint
    finished here (its results are beside the checkpoint it removed), rather than run it
    again from the start and register its models anew. Raises :class:`CheckpointError`."""
    results = folder.parent / "results.json"
    try:
        done = json.loads(_finished(folder).read_text())
    except (OSError, ValueError):
        return
    if isinstance(done, dict) and done.get("fingerprint") == fp and results.is_file():
        raise CheckpointError(
            f"nothing to resume: this run finished, its results are in {results}; run the "
            "same command without --resume to run it again"
        )


@dataclass
class Checkpoint:
    """The finished units of one run under ``folder`` (see the module docstring); open one
    with :meth:`open`."""

    folder: Path
    fingerprint: dict[str, str]
    found: int = 0  # units present when it was opened
    loaded: int = 0  # units reused by this run
    saved: int = 0  # units written by this run
    _manifest_written: bool = field(default=False, repr=False)
    #: the random part of the run's identity (see :attr:`identity`), kept in the manifest
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def identity(self) -> str:
        """This run's identity: the same for a run and its resumptions, another for another
        run of the same experiment (the fingerprint's hash, then a random part)."""
        digest = hashlib.sha256(json.dumps(self.fingerprint, sort_keys=True).encode())
        return f"{digest.hexdigest()[:12]}-{self.run}"

    @classmethod
    def open(cls, folder: Path, fp: dict[str, str], resume: bool) -> Checkpoint:
        """The checkpoint in ``folder`` for a run of fingerprint ``fp``. Without ``resume``,
        an existing checkpoint is refused (it holds an unfinished run's work); with it, one of
        another fingerprint is refused, naming what differs. Raises :class:`CheckpointError`."""
        folder = Path(folder)
        _remove_abandoned(folder)
        manifest = folder / MANIFEST
        if not manifest.is_file():
            if resume:
                _refuse_finished(folder, fp)
            for stray in folder.glob(".*.tmp"):  # a write cut short before any unit
                stray.unlink(missing_ok=True)
            return cls(folder, fp)
        n = summary(folder)
        try:
            body = json.loads(manifest.read_text())
            theirs = body["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{manifest} cannot be read ({exc}): delete {folder} to start over"
            ) from exc
        differ = [k for k in PARTS if fp.get(k) != theirs.get(k)]
        if differ:
            what = "; ".join(f"{PARTS[k]} {theirs.get(k)} there, {fp.get(k)} here" for k in differ)
            raise CheckpointError(
                f"{folder} holds the checkpoint of another run ({what}): "
                + ("resuming would mix their results; " if resume else "")
                + "give a new --out, or delete that folder to start over"
            )
        if not resume:
            raise CheckpointError(
                f"{folder} holds the checkpoint of an unfinished run of this experiment ({n} "
                "unit(s) of work done): add --resume to continue it, or give a new --out (or "
                "delete that folder to start over)"
            )
        run = body.get("run")
        if isinstance(run, str) and run:
            return cls(folder, fp, found=n, _manifest_written=True, run=run)
        found = cls(folder, fp, found=n)  # a manifest without the run's identity: given one
        found.begin()
        return found

    # -- reading

    def has(self, kind: str, *key: str) -> bool:
        """Whether the unit ``(kind, key)`` is finished (its JSON, written last, is there)."""
        return (self.folder / f"{_slug(kind, key)}.json").is_file()

    def load(self, kind: str, *key: str) -> Unit | None:
        """The finished unit ``(kind, key)``, or None when it is not there (or cannot be read
        back whole: then it is done again)."""
        import pandas as pd

        path = self.folder / f"{_slug(kind, key)}.json"
        if not path.is_file():
            return None
        try:
            body = json.loads(path.read_text())
            files = body.get("files", {})
            frame = pd.read_parquet(self.folder / files["frame"]) if "frame" in files else None
            objects = None
            if "objects" in files:
                with open(self.folder / files["objects"], "rb") as fh:
                    objects = pickle.load(fh)  # noqa: S301 (the run's own files; see docstring)
        except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, AttributeError):
            return None
        if body.get("kind") != kind or body.get("key") != list(key):
            return None
        self.loaded += 1
        return Unit(body["data"], frame, objects)

    def peek(self, kind: str) -> list[dict[str, Any]]:
        """The data of every finished unit of ``kind`` (for a summary: not counted as read
        back; a unit that cannot be read is left out)."""
        out = []
        for path in _units(self.folder):
            try:
                body = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(body, dict) and body.get("kind") == kind:
                out.append(body.get("data") or {})
        return out

    # -- writing

    def begin(self) -> None:
        """Write the manifest (the fingerprint and the run's identity) if it is not there
        yet: before anything is done under the run's identity outside the checkpoint."""
        if self._manifest_written:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {"fingerprint": self.fingerprint, "format": FORMAT, "run": self.run}
        _atomic(self.folder / MANIFEST, lambda p: p.write_text(json.dumps(body, indent=2)))
        _sync_folder(self.folder)
        self._manifest_written = True

    def save(
        self,
        kind: str,
        *key: str,
        data: dict[str, Any],
        frame: pd.DataFrame | None = None,
        objects: Any = None,
    ) -> None:
        """Write one finished unit: its predictions and objects first, its JSON last."""
        self.begin()
        stem = _slug(kind, key)
        files: dict[str, str] = {}
        if frame is not None:
            files["frame"] = f"{stem}.parquet"
            _atomic(self.folder / files["frame"], lambda p: frame.to_parquet(p, index=False))
        if objects is not None:
            files["objects"] = f"{stem}.pkl"

            def dump(p: Path) -> None:
                with open(p, "wb") as fh:
                    pickle.dump(objects, fh, protocol=pickle.HIGHEST_PROTOCOL)

            _atomic(self.folder / files["objects"], dump)
        body = {"kind": kind, "key": list(key), "files": files, "data": _json_safe(data)}
        _atomic(self.folder / f"{stem}.json", lambda p: p.write_text(json.dumps(body)))
        _sync_folder(self.folder)
        self.saved += 1

    def clear(self) -> None:
        """Remove the checkpoint (the run's results are written: nothing is left to resume)."""
        remove(self.folder)

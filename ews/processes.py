"""What a command knows about processes: whether one is still running (the owner of a
leftover temporary file, say), where processes of one run share large arrays, and keeping
its long-lived objects out of the garbage collector's reach: not collected while they are made
(imports), then frozen while it works."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as running; a number
    that cannot be a process id does not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def shared_temp() -> str | None:
    """Where a run's processes share large arrays through files (the fit workers' training
    matrices, the features a helper built): memory-backed ``/dev/shm`` when it has room for
    them, otherwise None (the system temp folder)."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK):
            stat = os.statvfs(shm)
            if stat.f_bavail * stat.f_frsize > 2 * 2**30:
                return str(shm)
    except OSError:
        pass
    return None


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within: every object alive on entry is out of the cyclic garbage collector's reach
    (``gc.freeze``), so that full collections walk only what is allocated meanwhile, and a
    process forked meanwhile does not copy, page by page, the objects its own collections
    would otherwise visit. On the way out they are unfrozen, unless objects were frozen
    already on entry (an enclosing use, or a service that freezes its caches): then whoever
    froze first decides when they return."""
    outer = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not outer:
            gc.unfreeze()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Within: the cyclic garbage collector does not run; as it was on the way out. For work
    that allocates many objects which all stay alive, such as importing libraries: there,
    each full collection walks everything allocated so far and frees nothing (importing skops
    and MLflow and saving a first model ran six full collections, 0.57 of 0.76 CPU-s of
    collecting in the registering process, on triage-peer). Objects no longer referenced are
    still freed at once (reference counting); only cycles wait for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

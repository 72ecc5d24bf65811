"""What a command knows about processes: whether one is still running (the owner of a
leftover temporary file, say), and keeping its long-lived objects out of the garbage
collector's reach while it works."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


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

"""ews.processes: pausing the cyclic garbage collector, and freezing the heap."""

from __future__ import annotations

import gc

import pytest

from ews.processes import collection_paused, frozen_heap


def test_collection_paused_restores_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():  # nested: still paused on the inner way out
            assert not gc.isenabled()
        assert not gc.isenabled()
        assert gc.collect() >= 0  # an explicit collection still runs
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("a failure inside")
    assert gc.isenabled()  # on the way out of a failure too
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # disabled by someone else before: left disabled
    finally:
        gc.enable()


def test_collection_paused_leaves_cycles_for_the_next_collection() -> None:
    """Within, a cycle dropped is not collected until a collection runs after it."""
    import weakref

    class Node:
        other: object = None

    with collection_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        for _ in range(10_000):  # enough allocations to trigger a collection if on
            [[]]  # noqa: B018
        assert ref() is not None
    gc.collect()
    assert ref() is None


def test_frozen_heap_unfreezes_only_what_it_froze() -> None:
    gc.unfreeze()
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > 0  # the inner use left the outer freeze
    assert gc.get_freeze_count() == 0

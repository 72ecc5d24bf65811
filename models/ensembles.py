"""Tree ensembles whose files hold their trees packed: the forests ews fits.

A fitted scikit-learn forest pickles (and skops writes) each of its trees as an object of its
own: some five objects and two arrays per tree, 1,000 objects and 400 arrays for triage's
200-tree forest. skops's Python work per object then dominates writing such a model to the
registry, auditing its file and loading it back (0.29, 0.11 and 0.23 CPU-s for a depth-10
forest on triage-peer). :class:`PackedRandomForestClassifier` and
:class:`PackedExtraTreesClassifier` are scikit-learn's forests, fitted and predicting exactly
as they do, whose state as skops writes it holds the trees packed (:func:`pack_trees`):
every tree's nodes in one array, their values in another, the attributes the trees share
once. Loading builds the same trees back (:func:`unpack_trees`), checked by the tests to
predict what the fitted forest does. (pickle, which writes trees fast, keeps them as they
are.)
"""

from __future__ import annotations

from typing import Any, SupportsIndex

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

__all__ = [
    "PackedExtraTreesClassifier",
    "PackedRandomForestClassifier",
    "PackedTrees",
    "pack_trees",
    "unpack_trees",
]


#: the key marking a forest's packed trees in its pickling state (:class:`PackedTrees`)
_PACKED = "ews.packed_trees"
#: the pickling state of scikit-learn's ``Tree`` that packing knows how to concatenate
_TREE_STATE = {"max_depth", "node_count", "nodes", "values"}


def _same_value(a: Any, b: Any) -> bool:
    """Whether two attribute values are interchangeable: the same type, and for arrays the
    same dtype, shape and elements."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind in _SCALARS:
        return bool(a == b)
    if isinstance(a, np.ndarray | np.generic):  # a tree's classes_ and n_classes_, small
        return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
    return False


_SCALARS = {type(None), bool, int, float, str}


def pack_trees(trees: Any) -> dict[str, Any] | None:
    """The fitted trees of an ensemble as a few arrays: every tree's nodes and values
    concatenated, the attributes they share once, each tree's own ``random_state``, depth and
    node count. None when they cannot be packed (not a list of fitted scikit-learn trees of
    one class sharing every other attribute, or a ``Tree`` state of another version's shape):
    they are then kept as they are."""
    from sklearn.tree._tree import Tree

    if not isinstance(trees, list) or not trees:
        return None
    kind = type(trees[0])
    states, tree_states = [], []
    args = None
    for tree in trees:
        inner = getattr(tree, "tree_", None)
        if type(tree) is not kind or type(inner) is not Tree:
            return None
        reduced: Any = inner.__reduce__()
        tree_args, tree_state = reduced[1], reduced[2]
        if set(tree_state) != _TREE_STATE:
            return None
        if args is None:
            args = tree_args
        elif not all(
            _same_value(np.asarray(a), np.asarray(b)) for a, b in zip(args, tree_args, strict=True)
        ):
            return None
        state = tree.__getstate__()
        states.append({k: v for k, v in state.items() if k not in ("tree_", "random_state")})
        tree_states.append(tree_state)
    template = states[0]
    for state in states[1:]:
        if state.keys() != template.keys() or not all(
            _same_value(state[k], template[k]) for k in template
        ):
            return None
    n_features, n_classes, n_outputs = args  # type: ignore[misc]
    return {
        _PACKED: 1,
        "module": kind.__module__,
        "class": kind.__qualname__,
        "attributes": template,
        "random_state": [t.random_state for t in trees],
        "tree": [int(n_features), np.asarray(n_classes), int(n_outputs)],
        "max_depth": np.array([s["max_depth"] for s in tree_states], dtype=np.int64),
        "node_count": np.array([s["node_count"] for s in tree_states], dtype=np.int64),
        "nodes": np.concatenate([s["nodes"] for s in tree_states]),
        "values": np.concatenate([s["values"] for s in tree_states]),
    }


def _check_packed(packed: dict[str, Any], counts: np.ndarray, n_features: int) -> None:
    """Refuse packed trees that do not hold together: node counts that are not those of the
    nodes and values given, a child outside its own tree, a split on a feature the model
    does not have. scikit-learn's ``Tree`` trusts its state (its prediction follows the
    children and reads the features without checking them), so a file must not be able to
    point it outside its arrays."""
    nodes, values = packed["nodes"], packed["values"]
    n = len(counts)
    if (
        counts.ndim != 1
        or n == 0
        or len(packed["random_state"]) != n
        or len(packed["max_depth"]) != n
        or bool((counts < 1).any())
        or int(counts.sum()) != len(nodes)
        or len(values) != len(nodes)
    ):
        raise ValueError("packed trees: their node counts do not match their nodes and values")
    size = np.repeat(counts, counts)  # each node's tree's node count
    leaf = nodes["left_child"] == -1
    for side in ("left_child", "right_child"):
        child = nodes[side]
        if bool(((child != -1) & ((child < 1) | (child >= size))).any()):
            raise ValueError(f"packed trees: a {side.replace('_', ' ')} outside its tree")
        if bool(((child == -1) != leaf).any()):
            raise ValueError("packed trees: a node with one child")
    feature = nodes["feature"][~leaf]
    if bool(((feature < 0) | (feature >= n_features)).any()):
        raise ValueError("packed trees: a split on a feature the model does not have")


def unpack_trees(packed: dict[str, Any], kind: Any, n_features: int | None = None) -> list[Any]:
    """The trees :func:`pack_trees` packed, as objects of ``kind`` (the class it recorded,
    checked against the one given: a file naming another class is refused), each reading
    ``n_features`` columns when given (the ensemble's own ``n_features_in_``, which
    scikit-learn checks every input against)."""
    from sklearn.tree._tree import Tree

    if (packed.get("module"), packed.get("class")) != (kind.__module__, kind.__qualname__):
        raise TypeError(
            f"packed trees of {packed.get('module')}.{packed.get('class')}, expected "
            f"{kind.__module__}.{kind.__qualname__}"
        )
    tree_features, n_classes, n_outputs = packed["tree"]
    n_classes = np.asarray(n_classes, dtype=np.intp)
    nodes, values = packed["nodes"], packed["values"]
    counts = np.asarray(packed["node_count"], dtype=np.int64)
    expected = {int(tree_features), packed["attributes"].get("n_features_in_")}
    if n_features is not None:
        expected.add(n_features)
    if len(expected) != 1:
        raise ValueError("packed trees: they read another number of features than the model")
    _check_packed(packed, counts, int(tree_features))
    ends = np.cumsum(counts)
    trees = []
    for i, (count, end) in enumerate(zip(counts, ends, strict=True)):
        start = int(end - count)
        inner = Tree(int(tree_features), n_classes, int(n_outputs))
        inner.__setstate__(
            {
                "max_depth": int(packed["max_depth"][i]),
                "node_count": int(count),
                "nodes": nodes[start : int(end)],
                "values": values[start : int(end)],
            }
        )
        tree = kind.__new__(kind)
        tree.__setstate__(
            {**packed["attributes"], "random_state": packed["random_state"][i], "tree_": inner}
        )
        trees.append(tree)
    return trees


def _new(kind: Any) -> Any:
    """An empty object of ``kind``, for pickle to set the state of (:class:`PackedTrees`)."""
    return kind.__new__(kind)


class PackedTrees:
    """A scikit-learn tree ensemble (mixed in before it) whose state as skops writes it
    (``__getstate__``) holds its trees packed (:func:`pack_trees`): a few arrays instead of
    some five objects per tree. The fitted model, its parameters and predictions are those of
    the ensemble it extends; only its files change: a 200-tree forest's skops file is written
    and audited in a tenth of the time, and loaded as fast."""

    def __getstate__(self) -> dict[str, Any]:
        return self._state(packed=True)

    def _state(self, packed: bool) -> dict[str, Any]:
        from sklearn import __version__

        base: Any = super().__getstate__()
        state = dict(base, _sklearn_version=__version__)
        trees = pack_trees(state.get("estimators_")) if packed else None
        if trees is not None:
            state["estimators_"] = trees
        return state

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        """pickle (a run's checkpoint, the models sent to the registering process, joblib's
        workers) and ``copy`` keep the trees as they are (a shallow copy shares them): pickle
        writes them faster than they are packed (8 against 20 ms for a 200-tree forest) and
        reads them back faster too. skops reads :meth:`__getstate__`, which packs them."""
        return (_new, (type(self),), self._state(packed=False))

    def __setstate__(self, state: dict[str, Any]) -> None:
        import warnings

        from sklearn import __version__
        from sklearn.exceptions import InconsistentVersionWarning

        state = dict(state)
        written_by = state.pop("_sklearn_version", "unknown")
        if written_by != __version__:
            warnings.warn(
                InconsistentVersionWarning(
                    estimator_name=type(self).__name__,
                    current_sklearn_version=__version__,
                    original_sklearn_version=written_by,
                ),
                stacklevel=2,
            )
        packed = state.get("estimators_")
        if isinstance(packed, dict) and packed.get(_PACKED) == 1:
            template = state.get("estimator_")
            if template is None:
                raise TypeError("packed trees without the ensemble's estimator_ to build them")
            state["estimators_"] = unpack_trees(
                packed, type(template), n_features=state.get("n_features_in_")
            )
        super().__setstate__(state)  # type: ignore[misc]


class PackedRandomForestClassifier(PackedTrees, RandomForestClassifier):
    """scikit-learn's ``RandomForestClassifier``, its trees packed in its files."""


class PackedExtraTreesClassifier(PackedTrees, ExtraTreesClassifier):
    """scikit-learn's ``ExtraTreesClassifier``, its trees packed in its files."""

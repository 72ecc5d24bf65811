"""Random forests over a grid of depths at the cost of the deepest one.

A grid that tries one random forest at several ``max_depth`` values (triage's classic grid:
200 trees, ``max_depth`` 5 and 10) normally fits every forest from scratch. It need not: a
tree grown depth first with ``max_depth=10`` and cut at depth 5 *is* a tree grown with
``max_depth=5`` on the same bootstrap sample. Every node above the cut was chosen by the same
rule (best split among a fresh random draw of ``max_features`` candidate features, subject to
the same ``min_samples_leaf`` and ``min_samples_split``), and a node at the cut keeps the class
shares of its samples, exactly what it would hold as a leaf. The only difference is which
random numbers the candidate-feature draws consume (the deeper build visits nodes in another
order), so the cut forest is a draw from the same distribution as a forest fitted with the
smaller depth, not the identical trees; with ``max_features=None`` (no feature sampling) it is
identical, and the tests check that.

:func:`truncate_forest` returns an ordinary fitted ``RandomForestClassifier`` (its
``max_depth`` parameter set to the cut), so ``predict_proba``, ``feature_importances_``,
pickling, SHAP's TreeExplainer and MLflow all work as for any forest. It relies on the
documented pickling state of scikit-learn's ``Tree`` (``max_depth``, ``node_count``, ``nodes``,
``values``), checked by the tests on the installed version.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sklearn.base import BaseEstimator
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    from models.grid import Candidate

__all__ = ["fast_class_encoding", "fit_candidates", "truncate_forest", "truncate_tree"]

_LEAF = -1
_UNDEFINED = -2


def _truncated_state(state: dict[str, Any], max_depth: int) -> dict[str, Any]:
    """The pickling state of a ``Tree`` cut at ``max_depth`` (nodes kept in depth-first order,
    the order scikit-learn's depth-first builder writes them)."""
    nodes = state["nodes"]
    left, right = nodes["left_child"], nodes["right_child"]
    order: list[int] = []
    depths: list[int] = []
    stack = [(0, 0)]
    while stack:
        node, depth = stack.pop()
        order.append(node)
        depths.append(depth)
        if left[node] != _LEAF and depth < max_depth:
            stack.append((int(right[node]), depth + 1))
            stack.append((int(left[node]), depth + 1))
    idx = np.asarray(order, dtype=np.intp)
    depth_arr = np.asarray(depths)
    remap = np.full(len(nodes), _LEAF, dtype=np.int64)
    remap[idx] = np.arange(len(idx))
    kept = nodes[idx].copy()
    leaf = (kept["left_child"] == _LEAF) | (depth_arr >= max_depth)
    kept["left_child"] = np.where(leaf, _LEAF, remap[kept["left_child"]])
    kept["right_child"] = np.where(leaf, _LEAF, remap[kept["right_child"]])
    kept["feature"] = np.where(leaf, _UNDEFINED, kept["feature"])
    kept["threshold"] = np.where(leaf, float(_UNDEFINED), kept["threshold"])
    if "missing_go_to_left" in (kept.dtype.names or ()):
        kept["missing_go_to_left"] = np.where(leaf, 0, kept["missing_go_to_left"])
    return {
        "max_depth": int(depth_arr.max()),
        "node_count": len(idx),
        "nodes": kept,
        "values": state["values"][idx].copy(),
    }


def truncate_tree(tree: DecisionTreeClassifier, max_depth: int) -> DecisionTreeClassifier:
    """A copy of a fitted decision tree cut at ``max_depth`` (nodes at that depth become
    leaves); its ``max_depth`` parameter is set to the cut."""
    from sklearn.tree._tree import Tree
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(tree)
    if not isinstance(max_depth, int | np.integer) or max_depth < 1:
        raise ValueError(f"max_depth: expected a positive whole number, got {max_depth!r}")
    grown = tree.max_depth
    if grown is not None and max_depth > grown:
        raise ValueError(
            f"cannot cut a tree grown to max_depth={grown} at a deeper max_depth={max_depth}"
        )
    src = tree.tree_
    new = Tree(
        src.n_features, np.asarray(tree.n_classes_, dtype=np.intp).reshape(-1), src.n_outputs
    )
    new.__setstate__(_truncated_state(src.__getstate__(), int(max_depth)))
    out = copy.copy(tree)
    out.tree_ = new
    out.max_depth = int(max_depth)
    return out


def truncate_forest(forest: RandomForestClassifier, max_depth: int) -> RandomForestClassifier:
    """A fitted random forest with every tree of ``forest`` cut at ``max_depth``.

    The result equals in distribution a forest fitted with ``max_depth`` and the other
    parameters of ``forest`` (see the module docstring), and costs no fitting. ``forest`` must
    be fitted with ``max_depth`` None or at least ``max_depth``; out-of-bag scores are not
    carried over.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(forest, RandomForestClassifier):
        raise TypeError(f"expected a RandomForestClassifier, got {type(forest).__name__}")
    check_is_fitted(forest)
    if forest.oob_score:
        raise ValueError("truncate_forest: forests fitted with oob_score are not supported")
    out = copy.copy(forest)
    out.estimators_ = [truncate_tree(t, max_depth) for t in forest.estimators_]
    out.max_depth = int(max_depth)
    out.estimator_ = copy.copy(forest.estimator_)
    out.estimator_.max_depth = int(max_depth)
    return out


def _class_indices(ar: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``np.unique(ar, return_inverse=True)`` for a 1-D float64 array holding exactly the
    class indices 0, 1, ..., k-1, each at least once, in linear time; None for any other
    array (then the caller sorts as NumPy does). Such an array is what a forest hands each
    of its trees (it encodes the labels once, then every tree encodes them again)."""
    if type(ar) is not np.ndarray or ar.ndim != 1 or ar.dtype != np.float64 or not len(ar):
        return None
    with np.errstate(invalid="ignore"):  # NaN or out-of-range values: refused below
        inverse = ar.astype(np.intp)
    if not np.array_equal(inverse, ar) or np.signbit(ar).any():  # whole, >= 0 and not -0.0
        return None
    k = int(inverse.max()) + 1
    if k > len(ar):
        return None
    if not np.bincount(inverse, minlength=k).all():  # a class index missing
        return None
    return np.arange(k, dtype=np.float64), inverse


class _TreeNumpy:
    """NumPy as scikit-learn's tree module sees it while :func:`fast_class_encoding` is on:
    the same module, but ``unique`` of the forest's encoded labels by :func:`_class_indices`
    (the same arrays, in linear time instead of a sort)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def unique(ar: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and kwargs == {"return_inverse": True}:
            found = _class_indices(ar)
            if found is not None:
                return found
        return np.unique(ar, *args, **kwargs)


def _lean_targets_check(original: Any) -> Any:
    """scikit-learn's ``check_classification_targets`` as a forest's trees see it while
    :func:`fast_class_encoding` is on: the labels a forest hands its trees (a column of class
    indices 0..k-1, float64) pass at once, as they pass the original's classification of the
    whole column (``type_of_target``: 'binary' or 'multiclass'); anything else goes to the
    original."""

    def check(y: Any) -> None:
        if (
            type(y) is np.ndarray
            and y.ndim == 2
            and y.shape[1] == 1
            and _class_indices(y[:, 0]) is not None
        ):
            return
        original(y)

    return check


class _ParamNames:
    """``BaseEstimator._get_param_names`` read once per class while :func:`fast_class_encoding`
    is on: a forest clones and configures each of its trees through ``get_params``, which
    reads the signature of the estimator's ``__init__`` (with ``inspect``) five times per
    tree. The names are those of the class, so the answer is the same every time."""

    def __init__(self, original: Any) -> None:
        self.original = original  # the plain function behind the classmethod
        self.names: dict[type, list[str]] = {}

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        owner = cls if cls is not None else type(obj)

        def names() -> list[str]:
            found = self.names.get(owner)
            if found is None:
                found = self.names[owner] = self.original(owner)
            return list(found)

        return names


_ENCODING_LOCK = threading.Lock()
_ENCODING_USERS = 0
_ENCODING_SAVED: tuple[Any, Any] | None = None  # the originals swapped out (checks, names)


@contextmanager
def fast_class_encoding() -> Iterator[None]:
    """While on, each tree of a forest encodes and checks its labels in linear time, and its
    parameters are read without ``inspect``.

    A forest encodes its labels once (class indices 0..k-1, as float64) and hands them to
    every tree, which checks them (``check_classification_targets``, a classification of the
    whole column) and encodes them again with ``np.unique(y, return_inverse=True)``: a sort
    of all the training rows per tree (on triage-peer, a third of the forests' fit CPU:
    800 sorts of 7k-51k rows). For such an array the answers are known (valid; classes
    0..k-1 and the array itself as integers): :class:`_TreeNumpy` and
    :func:`_lean_targets_check` give them after checking, in linear time, that the array is
    exactly that; anything else goes to NumPy and scikit-learn as before. Each tree is also
    cloned and configured through ``get_params``, whose parameter names come from
    ``inspect.signature`` of the class: they are read once per class (:class:`_ParamNames`).
    Together these were two thirds of a 200-tree forest's own Python work per tree (0.34 s
    against 0.16 s on tiny data, where the trees themselves cost nothing). The trees, and so
    the models and every figure, are bit for bit the same (the tests compare fitted forests
    with and without). Scikit-learn's tree module and ``BaseEstimator`` are given these for
    the duration (nested and concurrent uses share them); without the expected layout
    nothing is changed."""
    global _ENCODING_USERS, _ENCODING_SAVED
    try:
        from sklearn.base import BaseEstimator
        from sklearn.tree import _classes
    except ImportError:  # pragma: no cover - another scikit-learn layout: as it is
        yield
        return
    with _ENCODING_LOCK:
        if _ENCODING_USERS == 0:  # scikit-learn's own in place: swapped for ours
            check = getattr(_classes, "check_classification_targets", None)
            names = BaseEstimator.__dict__.get("_get_param_names")
            usable = (
                getattr(_classes, "np", None) is np
                and callable(check)
                and isinstance(names, classmethod)
            )
            if usable:
                _ENCODING_SAVED = (check, names)
                _classes.np = _TreeNumpy()
                _classes.check_classification_targets = _lean_targets_check(check)
                BaseEstimator._get_param_names = _ParamNames(names.__func__)
        else:  # ours in place (an enclosing or concurrent use)
            usable = True
        if usable:
            _ENCODING_USERS += 1
    try:
        yield
    finally:
        if usable:
            with _ENCODING_LOCK:
                _ENCODING_USERS -= 1
                if _ENCODING_USERS == 0 and _ENCODING_SAVED is not None:
                    _classes.np = np
                    _classes.check_classification_targets = _ENCODING_SAVED[0]
                    BaseEstimator._get_param_names = _ENCODING_SAVED[1]
                    _ENCODING_SAVED = None


def _depth_key(cand: Candidate) -> tuple[Any, ...] | None:
    """Candidates that differ only in ``max_depth`` share this key (None: not shareable)."""
    if cand.estimator != "random_forest" or cand.calibration is not None:
        return None
    depth = cand.params.get("max_depth")
    if depth is not None and not isinstance(depth, int):
        return None
    if cand.params.get("oob_score"):
        return None
    rest = tuple(sorted((k, repr(v)) for k, v in cand.params.items() if k != "max_depth"))
    return (cand.family, cand.seed, rest)


def fit_candidates(
    candidates: Sequence[Candidate],
    x: Any,
    y: Any,
    n_jobs: int | None = None,
    share_depths: bool = True,
    on_fit: Callable[[str], None] | None = None,
) -> dict[str, BaseEstimator]:
    """Fit every grid candidate on ``(x, y)``; name -> fitted estimator, in grid order.

    With ``share_depths``, random-forest candidates that differ only in ``max_depth`` are
    fitted once, at the deepest of their depths, and the others are cut from it with
    :func:`truncate_forest` (same distribution of trees, one fit instead of several).
    ``on_fit(name)`` is called after each candidate is ready (for progress bars). Trees
    encode their labels without a sort (:func:`fast_class_encoding`: the same models).
    """
    with fast_class_encoding():
        return _fit_candidates(candidates, x, y, n_jobs, share_depths, on_fit)


def _fit_candidates(
    candidates: Sequence[Candidate],
    x: Any,
    y: Any,
    n_jobs: int | None,
    share_depths: bool,
    on_fit: Callable[[str], None] | None,
) -> dict[str, BaseEstimator]:
    groups: dict[tuple[Any, ...], list[Candidate]] = {}
    for cand in candidates:
        key = _depth_key(cand) if share_depths else None
        if key is not None:
            groups.setdefault(key, []).append(cand)
    fitted: dict[str, BaseEstimator] = {}
    done: set[str] = set()
    for cand in candidates:
        if cand.name in done:
            continue
        key = _depth_key(cand) if share_depths else None
        family = groups.get(key, [cand]) if key is not None else [cand]
        if len(family) == 1:
            fitted[cand.name] = cand.build(n_jobs=n_jobs).fit(x, y)
            done.add(cand.name)
            if on_fit:
                on_fit(cand.name)
            continue
        # the deepest member (None = unlimited) is fitted; the others are cut from it
        deepest = max(
            family,
            key=lambda c: np.inf if c.params.get("max_depth") is None else c.params["max_depth"],
        )
        forest = deepest.build(n_jobs=n_jobs).fit(x, y)
        for member in family:
            depth = member.params.get("max_depth")
            fitted[member.name] = (
                forest if member is deepest or depth is None else truncate_forest(forest, depth)
            )
            done.add(member.name)
            if on_fit:
                on_fit(member.name)
    return {c.name: fitted[c.name] for c in candidates}

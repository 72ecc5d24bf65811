"""Cutting a fitted random forest at a smaller depth (models.forest)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

from models.forest import truncate_forest


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.random((1500, 5))
    y = (x[:, 0] + 0.6 * x[:, 1] * rng.random(1500) + 0.2 * rng.random(1500) > 0.9).astype(int)
    return x, y


def test_cut_forest_equals_forest_fitted_shallow_without_feature_sampling(data) -> None:
    x, y = data
    params = dict(n_estimators=15, min_samples_leaf=10, max_features=None, random_state=3)
    deep = RandomForestClassifier(max_depth=8, **params).fit(x, y)
    shallow = RandomForestClassifier(max_depth=3, **params).fit(x, y)
    cut = truncate_forest(deep, 3)
    np.testing.assert_array_equal(cut.predict_proba(x), shallow.predict_proba(x))
    np.testing.assert_allclose(cut.feature_importances_, shallow.feature_importances_)
    assert [t.tree_.node_count for t in cut.estimators_] == [
        t.tree_.node_count for t in shallow.estimators_
    ]
    assert cut.max_depth == 3 and cut.get_params()["max_depth"] == 3
    assert max(t.get_depth() for t in cut.estimators_) <= 3
    # the deep forest is left as it was
    assert deep.max_depth == 8 and max(t.get_depth() for t in deep.estimators_) > 3


def test_cut_forest_with_feature_sampling_is_a_comparable_forest(data) -> None:
    x, y = data
    deep = RandomForestClassifier(
        n_estimators=40, max_depth=8, min_samples_leaf=10, random_state=0
    ).fit(x, y)
    shallow = RandomForestClassifier(
        n_estimators=40, max_depth=3, min_samples_leaf=10, random_state=0
    ).fit(x, y)
    cut = truncate_forest(deep, 3)
    assert max(t.get_depth() for t in cut.estimators_) <= 3
    assert (
        abs(
            roc_auc_score(y, cut.predict_proba(x)[:, 1])
            - roc_auc_score(y, shallow.predict_proba(x)[:, 1])
        )
        < 0.02
    )
    again = pickle.loads(pickle.dumps(cut))
    np.testing.assert_array_equal(again.predict_proba(x), cut.predict_proba(x))


def test_refuses_deeper_cut_and_unfitted(data) -> None:
    x, y = data
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0).fit(x, y)
    with pytest.raises(ValueError, match="deeper"):
        truncate_forest(forest, 5)
    with pytest.raises(ValueError, match="positive"):
        truncate_forest(forest, 0)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        truncate_forest(RandomForestClassifier(), 2)


def test_fit_candidates_fits_each_forest_family_once(data, monkeypatch) -> None:
    from models.forest import fit_candidates
    from models.grid import expand_grid

    x, y = data
    grid = [
        {"name": "lr", "estimator": "logistic_regression", "params": {"C": [0.01, 1.0]}},
        {
            "name": "rf",
            "estimator": "random_forest",
            "params": {"n_estimators": [10], "max_depth": [3, 6], "min_samples_leaf": [10]},
        },
    ]
    cands = expand_grid(grid, seed=1)
    fits: list[object] = []
    original = RandomForestClassifier.fit

    def counting_fit(self, *args, **kwargs):
        fits.append(self.max_depth)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RandomForestClassifier, "fit", counting_fit)
    models = fit_candidates(cands, x, y, n_jobs=1)
    assert list(models) == [c.name for c in cands]
    assert fits == [6]  # one forest, at the deepest depth
    depths = {name: m.max_depth for name, m in models.items() if name.startswith("rf")}
    assert sorted(depths.values()) == [3, 6]
    for name, model in models.items():
        assert model.predict_proba(x).shape == (len(x), 2), name
    fits.clear()
    fit_candidates(cands, x, y, n_jobs=1, share_depths=False)
    assert sorted(fits) == [3, 6]


def _tree_arrays(forest: RandomForestClassifier) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(t.tree_.__getstate__()["nodes"], t.tree_.value) for t in forest.estimators_]


@pytest.mark.parametrize("classes", [2, 3])
def test_fast_class_encoding_fits_the_same_forest(data, classes) -> None:
    """Trees encoding their labels without a sort (fast_class_encoding) are bit for bit
    the trees of scikit-learn's own fit, with row sampling (max_samples) and without."""
    import sklearn.tree._classes as tree_module

    from models.forest import fast_class_encoding

    x, y = data
    labels = np.where(x[:, 2] > 0.8, 2, y) if classes == 3 else np.where(y == 1, "yes", "no")
    for params in ({"max_samples": 0.5}, {"bootstrap": False, "max_features": 2}):
        forest = RandomForestClassifier(
            n_estimators=12, max_depth=6, min_samples_leaf=5, random_state=4, **params
        )
        plain = pickle.loads(pickle.dumps(forest)).fit(x, labels)
        with fast_class_encoding():
            assert tree_module.np is not np  # the proxy is in place
            fast = forest.fit(x, labels)
        assert tree_module.np is np  # restored
        for (n1, v1), (n2, v2) in zip(_tree_arrays(plain), _tree_arrays(fast), strict=True):
            np.testing.assert_array_equal(n1, n2)
            np.testing.assert_array_equal(v1, v2)
        for t1, t2 in zip(plain.estimators_, fast.estimators_, strict=True):
            np.testing.assert_array_equal(t1.classes_, t2.classes_)
            assert t1.classes_.dtype == t2.classes_.dtype and t1.n_classes_ == t2.n_classes_
        np.testing.assert_array_equal(plain.predict_proba(x), fast.predict_proba(x))
        assert pickle.dumps(plain.estimators_[0]) == pickle.dumps(fast.estimators_[0])


def test_class_indices_answer_as_numpy_or_not_at_all() -> None:
    """The linear-time encoding answers exactly as np.unique(..., return_inverse=True) for
    arrays of class indices 0..k-1 and declines (None) everything else, which NumPy sorts."""
    from models.forest import _class_indices, _TreeNumpy

    rng = np.random.default_rng(0)
    for a in (
        rng.integers(0, 2, 500).astype(float),
        rng.integers(0, 5, 500).astype(float),
        np.zeros(3),
        np.asfortranarray(rng.integers(0, 3, (40, 2)).astype(float))[:, 1],
    ):
        found = _class_indices(a)
        assert found is not None
        want = np.unique(a, return_inverse=True)
        for got, expected in zip(found, want, strict=True):
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype and got.shape == expected.shape
    for a in (
        np.array([0.0, 2.0]),  # index 1 missing
        np.array([1.0, 2.0]),  # not from 0
        np.array([-0.0, 1.0]),  # negative zero: NumPy keeps its sign
        np.array([-1.0, 0.0]),
        np.array([np.nan, 0.0, 1.0]),
        np.array([0.5, 0.0]),
        np.array([1e300, 0.0]),
        np.array([0, 1]),  # not float64
        np.array([], dtype=float),
        np.zeros((2, 2)),
    ):
        assert _class_indices(a) is None
        for got, expected in zip(
            _TreeNumpy.unique(a, return_inverse=True),
            np.unique(a, return_inverse=True),
            strict=True,
        ):
            np.testing.assert_array_equal(got, expected)
    # any other call is NumPy's own
    a = np.array([1.0, 0.0, 1.0])
    np.testing.assert_array_equal(_TreeNumpy.unique(a), np.unique(a))
    assert _TreeNumpy().float64 is np.float64


def test_fast_class_encoding_nests_and_restores() -> None:
    import sklearn.tree._classes as tree_module
    from sklearn.base import BaseEstimator

    from models.forest import fast_class_encoding

    check = tree_module.check_classification_targets
    names = BaseEstimator.__dict__["_get_param_names"]
    with fast_class_encoding():
        inner = tree_module.np, tree_module.check_classification_targets
        assert inner[1] is not check
        assert BaseEstimator.__dict__["_get_param_names"] is not names
        with fast_class_encoding():
            assert (tree_module.np, tree_module.check_classification_targets) == inner
        assert (tree_module.np, tree_module.check_classification_targets) == inner
    assert tree_module.np is np and tree_module.check_classification_targets is check
    assert BaseEstimator.__dict__["_get_param_names"] is names
    with pytest.raises(RuntimeError), fast_class_encoding():
        raise RuntimeError("a failed fit")
    assert tree_module.np is np and tree_module.check_classification_targets is check
    assert BaseEstimator.__dict__["_get_param_names"] is names


def test_lean_checks_answer_as_scikit_learn() -> None:
    """While the forest's checks are lean, the labels of a forest's trees pass, any other
    labels meet scikit-learn's own check (continuous ones are refused), and every estimator's
    parameter names are its own."""
    import sklearn.tree._classes as tree_module
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    from models.forest import fast_class_encoding

    estimators = [
        RandomForestClassifier(),
        DecisionTreeClassifier(max_depth=3),
        LogisticRegression(C=0.5),
        Pipeline([("s", StandardScaler()), ("m", LogisticRegression())]),
    ]
    plain = [(type(e)._get_param_names(), e.get_params(deep=True)) for e in estimators]
    with fast_class_encoding():
        lean = [(type(e)._get_param_names(), e.get_params(deep=True)) for e in estimators]
        again = [(type(e)._get_param_names(), e.get_params(deep=True)) for e in estimators]
        check = tree_module.check_classification_targets
        assert check(np.array([[0.0], [1.0], [2.0]])) is None
        with pytest.raises(ValueError, match="continuous"):
            check(np.array([[0.5], [1.0]]))
        with pytest.raises(ValueError, match="continuous"):
            check(np.array([[0.0], [1.5]]))
    assert lean == plain and again == plain

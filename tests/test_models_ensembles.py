"""Forests whose files hold their trees packed (models.ensembles): the same model as
scikit-learn's, written as a few arrays, loaded back into the same trees."""

from __future__ import annotations

import copy
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.exceptions import InconsistentVersionWarning

from models import registry
from models.ensembles import (
    PackedExtraTreesClassifier,
    PackedRandomForestClassifier,
    pack_trees,
    unpack_trees,
)
from models.forest import truncate_forest
from models.grid import make_estimator

PARAMS = dict(n_estimators=25, max_depth=6, min_samples_leaf=5, random_state=4, n_jobs=1)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(11)
    X = pd.DataFrame(rng.poisson(2.0, (800, 6)).astype(float), columns=[f"c{i}" for i in range(6)])
    y = (X["c0"] + 0.5 * X["c1"] + rng.normal(0, 1.5, 800) > 3.5).astype(int).to_numpy()
    return X, y


def _same_trees(a: object, b: object, X: np.ndarray) -> None:
    """Every tree of ``a`` is the tree of ``b`` at the same place: same nodes, same values,
    same attributes, same predictions."""
    assert len(a.estimators_) == len(b.estimators_)
    for s, t in zip(a.estimators_, b.estimators_, strict=True):
        assert type(s) is type(t)
        assert s.random_state == t.random_state
        assert s.classes_.dtype == t.classes_.dtype and np.array_equal(s.classes_, t.classes_)
        assert s.tree_.node_count == t.tree_.node_count and s.tree_.max_depth == t.tree_.max_depth
        assert np.array_equal(s.tree_.threshold, t.tree_.threshold)
        assert np.array_equal(s.tree_.value, t.tree_.value)
        assert np.array_equal(s.predict_proba(X), t.predict_proba(X))


@pytest.mark.parametrize(
    ("packed", "plain"),
    [
        (PackedRandomForestClassifier, RandomForestClassifier),
        (PackedExtraTreesClassifier, ExtraTreesClassifier),
    ],
)
def test_a_packed_forest_is_fitted_as_scikit_learns_and_pickles_back_whole(
    data: tuple[pd.DataFrame, np.ndarray], packed: type, plain: type
) -> None:
    X, y = data
    ours = packed(**PARAMS).fit(X, y)
    theirs = plain(**PARAMS).fit(X, y)
    assert isinstance(ours, plain)
    _same_trees(ours, theirs, X.to_numpy())
    assert np.array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    # its pickling state holds the trees as arrays: every node of every tree, once
    state = ours.__getstate__()
    packed_trees = state["estimators_"]
    assert isinstance(packed_trees, dict)
    assert len(packed_trees["nodes"]) == sum(t.tree_.node_count for t in ours.estimators_)
    assert isinstance(ours.estimators_, list)  # the fitted model is left as it was
    raw = pickle.dumps(ours)
    assert b"ews.packed_trees" not in raw  # pickle keeps the trees as they are (faster)
    again = pickle.loads(raw)
    assert type(again) is packed
    # the packed state (skops's) builds the same forest back
    rebuilt = packed.__new__(packed)
    rebuilt.__setstate__(ours.__getstate__())
    _same_trees(rebuilt, ours, X.to_numpy())
    _same_trees(again, ours, X.to_numpy())
    assert np.array_equal(again.predict_proba(X), ours.predict_proba(X))
    assert np.allclose(again.feature_importances_, ours.feature_importances_)
    assert again.get_params() == ours.get_params()


def test_the_grid_fits_packed_forests_and_a_cut_forest_stays_packed(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = data
    forest = make_estimator("random_forest", {"n_estimators": 10, "max_depth": 6}, n_jobs=1)
    assert type(forest) is PackedRandomForestClassifier
    assert type(make_estimator("extra_trees", {}, n_jobs=1)) is PackedExtraTreesClassifier
    forest.fit(X, y)
    cut = truncate_forest(forest, 3)
    assert type(cut) is PackedRandomForestClassifier
    back = PackedRandomForestClassifier.__new__(PackedRandomForestClassifier)
    back.__setstate__(cut.__getstate__())
    _same_trees(back, cut, X.to_numpy())
    assert max(t.get_depth() for t in back.estimators_) <= 3


def test_a_shallow_copy_shares_the_trees(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = data
    forest = PackedRandomForestClassifier(**PARAMS).fit(X, y)
    twin = copy.copy(forest)
    assert twin is not forest and twin.estimators_ is forest.estimators_


def test_trees_that_differ_in_a_shared_attribute_are_kept_as_they_are(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = data
    forest = PackedRandomForestClassifier(**PARAMS).fit(X, y)
    odd = copy.copy(forest)
    odd.estimators_ = [copy.copy(t) for t in forest.estimators_]
    odd.estimators_[3].min_samples_leaf = 7
    assert pack_trees(odd.estimators_) is None
    assert isinstance(odd.__getstate__()["estimators_"], list)
    back = pickle.loads(pickle.dumps(odd))
    assert back.estimators_[3].min_samples_leaf == 7 and back.estimators_[2].min_samples_leaf == 5
    assert np.array_equal(back.predict_proba(X), forest.predict_proba(X))
    assert pack_trees([]) is None and pack_trees("not trees") is None


def test_packed_trees_are_built_only_as_the_class_they_name(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """A file cannot make loading build its trees as another class than the ensemble's own
    template estimator's."""
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    X, y = data
    forest = PackedRandomForestClassifier(**PARAMS).fit(X, y)
    packed = pack_trees(forest.estimators_)
    assert packed is not None
    assert len(unpack_trees(packed, DecisionTreeClassifier)) == PARAMS["n_estimators"]
    with pytest.raises(TypeError, match="expected sklearn.tree._classes.ExtraTreeClassifier"):
        unpack_trees(packed, ExtraTreeClassifier)
    state = forest.__getstate__()
    state["estimators_"] = {**packed, "class": "ExtraTreeClassifier"}
    with pytest.raises(TypeError, match="packed trees of"):
        PackedRandomForestClassifier.__new__(PackedRandomForestClassifier).__setstate__(state)


def test_a_file_of_another_scikit_learn_version_warns_as_scikit_learn_does(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = data
    state = PackedRandomForestClassifier(**PARAMS).fit(X, y).__getstate__()
    state["_sklearn_version"] = "0.1"
    other = PackedRandomForestClassifier.__new__(PackedRandomForestClassifier)
    with pytest.warns(InconsistentVersionWarning):
        other.__setstate__(state)
    assert "_sklearn_version" not in other.__dict__
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        pickle.loads(pickle.dumps(other))  # the same version: no warning


def test_a_packed_forest_is_registered_as_a_few_arrays_and_loads_back_whole(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """Through the registry's save (MLflow's skops format, audited): the file holds a
    handful of arrays whatever the number of trees, names no type but the forest's own
    beyond skops's defaults, and loads back into the same trees."""
    import mlflow.sklearn

    X, y = data
    forest = make_estimator("random_forest", {"n_estimators": 40}, seed=0, n_jobs=1).fit(X, y)
    entry = registry.ModelEntry(model=forest, name="", example=X, tags={})
    trusted = registry._trusted_types(forest)
    assert trusted == ["models.ensembles.PackedRandomForestClassifier"]
    job = registry._SaveJob(entry, tmp_path / "m", registry._signature(entry), trusted)
    registry._save_job(job)
    with zipfile.ZipFile(tmp_path / "m" / "model" / "model.skops") as z:
        arrays = [n for n in z.namelist() if n.endswith(".npy")]
    assert len(arrays) < 12  # 200 for the same forest's trees unpacked
    loaded = mlflow.sklearn.load_model(str(tmp_path / "m" / "model"))
    assert type(loaded) is PackedRandomForestClassifier
    _same_trees(loaded, forest, X.to_numpy())
    assert np.array_equal(loaded.predict_proba(X), forest.predict_proba(X))


def test_packed_trees_that_do_not_hold_together_are_refused(
    data: tuple[pd.DataFrame, np.ndarray],
) -> None:
    """scikit-learn's trees trust their state when they predict: a file whose packed trees
    count other nodes than they hold, point a child outside its own tree or split on a
    feature the model does not have is refused before any tree is built."""
    from sklearn.tree import DecisionTreeClassifier

    X, y = data
    forest = PackedRandomForestClassifier(**PARAMS).fit(X, y)
    packed = pack_trees(forest.estimators_)
    assert packed is not None
    first = int(packed["node_count"][0])

    def refused(change: dict[str, object], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            unpack_trees({**packed, **change}, DecisionTreeClassifier)

    refused({"node_count": packed["node_count"] + 1}, "node counts")
    refused({"random_state": packed["random_state"][:-1]}, "node counts")
    nodes = packed["nodes"].copy()
    split = int(np.flatnonzero(nodes["left_child"][:first] != -1)[0])
    nodes["left_child"][split] = first  # the first node of the second tree
    refused({"nodes": nodes}, "left child outside its tree")
    nodes = packed["nodes"].copy()
    nodes["feature"][split] = X.shape[1]
    refused({"nodes": nodes}, "feature the model does not have")
    nodes = packed["nodes"].copy()
    nodes["right_child"][split] = -1
    refused({"nodes": nodes}, "one child")
    refused({"tree": [X.shape[1] + 5, *packed["tree"][1:]]}, "another number of features")
    with pytest.raises(ValueError, match="another number of features"):
        unpack_trees(packed, DecisionTreeClassifier, n_features=X.shape[1] - 1)
    state = forest.__getstate__()
    state["n_features_in_"] = X.shape[1] + 5  # the forest's own count, checked by predict
    with pytest.raises(ValueError, match="another number of features"):
        PackedRandomForestClassifier.__new__(PackedRandomForestClassifier).__setstate__(state)
    assert len(unpack_trees(packed, DecisionTreeClassifier)) == PARAMS["n_estimators"]

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

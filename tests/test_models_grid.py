"""The model grid: expansion, names, seeds, pipelines, calibration, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.base import clone

from models.experiment import load_config
from models.grid import GridError, candidate_name, expand_grid, load_grid, make_estimator


def _xy(n: int = 200) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.poisson(2, n).astype(float)})
    X.loc[::7, "b"] = np.nan
    y = (X["a"] + rng.normal(0, 0.5, n) > 0.3).astype(int).to_numpy()
    return X, y


def test_expand_grid_names_seeds_and_order() -> None:
    grid = [
        {"name": "lr", "estimator": "logistic_regression", "params": {"C": [0.1, 1.0]}},
        {
            "name": "rf",
            "estimator": "random_forest",
            "params": {"n_estimators": 10, "max_depth": [3, 5], "min_samples_leaf": [1, 4]},
        },
    ]
    cands = expand_grid(grid, seed=11)
    assert [c.name for c in cands] == [
        "lr[C=0.1]",
        "lr[C=1.0]",
        "rf[max_depth=3,min_samples_leaf=1,n_estimators=10]",
        "rf[max_depth=3,min_samples_leaf=4,n_estimators=10]",
        "rf[max_depth=5,min_samples_leaf=1,n_estimators=10]",
        "rf[max_depth=5,min_samples_leaf=4,n_estimators=10]",
    ]
    assert all(c.seed == 11 for c in cands)
    rf = cands[-1].build(n_jobs=1)
    assert rf.get_params()["random_state"] == 11 and rf.get_params()["max_depth"] == 5
    lr = cands[0].build()
    assert [step for step, _ in lr.steps] == ["impute", "scale", "model"]
    assert lr.named_steps["model"].C == 0.1 and lr.named_steps["model"].random_state == 11
    assert candidate_name("hgb", {"loss": "log_loss"}) == "hgb[loss='log_loss']"


def test_every_estimator_fits_with_missing_values_and_clones() -> None:
    X, y = _xy()
    for kind in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        est = make_estimator(kind, {}, seed=0, n_jobs=1)
        fitted = clone(est).fit(X, y)
        p = fitted.predict_proba(X)[:, 1]
        assert p.shape == (len(X),) and np.all((p >= 0) & (p <= 1))
        # same seed, same model
        again = clone(est).fit(X, y).predict_proba(X)[:, 1]
        assert np.array_equal(p, again)


def test_calibration_wraps_the_estimator() -> None:
    X, y = _xy()
    (cand,) = expand_grid(
        [
            {
                "name": "hgb",
                "estimator": "hist_gradient_boosting",
                "params": {"max_iter": 20},
                "calibration": "sigmoid",
            }
        ]
    )
    est = cand.build(n_jobs=1)
    assert type(est).__name__ == "CalibratedClassifierCV" and est.method == "sigmoid"
    assert est.fit(X, y).predict_proba(X).shape == (len(X), 2)


def test_threads_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_THREADS", "2")
    get_settings.cache_clear()
    try:
        assert make_estimator("random_forest").get_params()["n_jobs"] == 2
    finally:
        get_settings.cache_clear()


def test_bad_grids_are_refused_before_any_work() -> None:
    with pytest.raises(GridError, match="unknown parameter.*foo"):
        expand_grid([{"name": "rf", "estimator": "random_forest", "params": {"foo": [1]}}])
    with pytest.raises(ValidationError, match="estimator"):
        expand_grid([{"name": "x", "estimator": "svm"}])
    with pytest.raises(ValidationError, match="set by the experiment"):
        expand_grid([{"name": "rf", "estimator": "random_forest", "params": {"random_state": 1}}])
    with pytest.raises(ValidationError, match="duplicate model names"):
        expand_grid(
            [
                {"name": "a", "estimator": "random_forest"},
                {"name": "a", "estimator": "logistic_regression"},
            ]
        )


def test_yaml_grids(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("- {name: lr, estimator: logistic_regression, params: {C: 0.5}}\n")
    assert [c.name for c in expand_grid(load_grid(path))] == ["lr[C=0.5]"]
    path.write_text("- {name: lr, estimator: nope}\n")
    with pytest.raises(GridError, match="grid.yaml"):
        load_grid(path)
    # The packaged default experiment has LR, RF and HGB families, all buildable.
    default = load_config()
    families = {m.estimator for m in default.grid}
    assert {"logistic_regression", "random_forest", "hist_gradient_boosting"} <= families
    assert len(expand_grid(default.grid)) >= 3


def test_soft_vote_of_lr_and_hgb_is_one_sklearn_candidate() -> None:
    import pickle

    X, y = _xy()
    (cand,) = expand_grid(
        [
            {
                "name": "vote",
                "estimator": "lr_hgb_vote",
                "params": {"lr__model__C": 0.5, "hgb__max_iter": 20, "hgb__max_depth": 3},
            }
        ],
        seed=7,
    )
    assert cand.name == "vote[hgb__max_depth=3,hgb__max_iter=20,lr__model__C=0.5]"
    est = cand.build(n_jobs=1)
    assert type(est).__name__ == "VotingClassifier" and est.voting == "soft"
    lr, hgb = dict(est.estimators)["lr"], dict(est.estimators)["hgb"]
    # the LR member keeps its impute + scale pipeline; both members are seeded
    assert [step for step, _ in lr.steps] == ["impute", "scale", "model"]
    assert lr.named_steps["model"].C == 0.5 and lr.named_steps["model"].random_state == 7
    assert hgb.max_iter == 20 and hgb.max_depth == 3 and hgb.random_state == 7
    fitted = clone(est).fit(X, y)  # X has NaNs: the imputer and HGB deal with them
    p = fitted.predict_proba(X)[:, 1]
    members = [m.predict_proba(X)[:, 1] for m in fitted.estimators_]
    assert np.allclose(p, np.mean(members, axis=0))  # soft voting: the mean probability
    assert np.array_equal(p, clone(est).fit(X, y).predict_proba(X)[:, 1])
    back = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(back.predict_proba(X), fitted.predict_proba(X))


def test_soft_vote_refuses_bad_member_parameters() -> None:
    with pytest.raises(GridError, match="unknown parameter.*hgb__foo"):
        make_estimator("lr_hgb_vote", {"hgb__foo": 1})
    with pytest.raises(ValidationError, match="set by the experiment"):
        expand_grid([{"name": "v", "estimator": "lr_hgb_vote", "params": {"hgb__random_state": 1}}])

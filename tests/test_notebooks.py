"""The data scientists' notebooks run, top to bottom, on a small synthetic agency.

Each notebook (jupytext percent format in notebooks/) is converted with jupytext and
executed with nbclient on the venv's python3 kernel; settings reach it through the
environment (EWS_HOME, EWS_NOTEBOOK_AGENCY, EWS_NOTEBOOK_CONFIG, EWS_NOTEBOOK_OUT). A cell
that raises fails the test with the cell's traceback. The notebooks run in order in one
workspace: 02 trains and registers a champion, 03 reads its evaluation and explanations.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
AGENCY = "synthetic"

# a small experiment so the notebooks stay fast: one label, two test dates, a tiny grid
SMALL_CONFIG = """
name: notebook-test
agency: synthetic
labels: [sustained_or_force]
splitter:
  test_dates: [2014-01-01, 2015-01-01]
  label_window: 1y
  train_history: 3y
  train_every: 1y
  inner_splits: 1
grid:
  - name: lr
    estimator: logistic_regression
    params: {C: [0.1]}
  - name: rf
    estimator: random_forest
    params: {n_estimators: 30, max_depth: [4], min_samples_leaf: 10}
rules: [cmpd, miami_dade, best_single]
ks: [5, 10]
n_boot: 100
"""


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A workspace holding one synthetic agency (500 officers, 6 years), and the settings
    the notebooks read."""
    from ews.ingest import ingest_package
    from ews.store import Workspace
    from ews.synth import synthesize

    root = tmp_path_factory.mktemp("notebooks")
    home = root / "ews-home"
    package = root / "package"
    synthesize(package, officers=500, years=6, seed=3, start_year=2010, quiet=True)
    ingest_package(package, agency=AGENCY, workspace=Workspace(home))
    config = root / "experiment.yaml"
    config.write_text(SMALL_CONFIG)
    return {
        "EWS_HOME": str(home),
        "EWS_NOTEBOOK_AGENCY": AGENCY,
        "EWS_NOTEBOOK_CONFIG": str(config),
        "EWS_NOTEBOOK_OUT": str(root / "out"),
        "EWS_NOTEBOOK_AS_OF": "2013-01-01,2014-01-01,2015-01-01",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }


def run_notebook(path: Path, env: dict[str, str], workdir: Path) -> object:
    """Convert a percent-format notebook and execute every cell; return the executed one."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment at start
    try:
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=120,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _outputs(nb: object) -> str:
    """All text the notebook printed or displayed, for assertions."""
    parts: list[str] = []
    for cell in nb.cells:  # type: ignore[attr-defined]
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            data = out.get("data", {})
            if "text/plain" in data:
                parts.append(data["text/plain"])
    return "\n".join(parts)


def test_01_explore_agency(notebook_env: dict[str, str], tmp_path: Path) -> None:
    nb = run_notebook(NOTEBOOKS / "01_explore_agency.py", notebook_env, tmp_path)
    text = _outputs(nb)
    assert f"agency {AGENCY}" in text
    assert "use_of_force" in text and "complaint" in text
    assert "officers in cohort" in text
    assert "sustained_or_force" in text  # the base-rate table


def test_02_then_03_train_compare_and_read(notebook_env: dict[str, str], tmp_path: Path) -> None:
    import json

    nb2 = run_notebook(NOTEBOOKS / "02_train_and_compare.py", notebook_env, tmp_path)
    text2 = _outputs(nb2)
    assert "training years only" in text2
    assert "champion for sustained_or_force" in text2 and "registered" in text2
    results = json.loads((Path(notebook_env["EWS_NOTEBOOK_OUT"]) / "results.json").read_text())
    methods = {(r["test_date"], r["method"]) for r in results["records"]}
    assert {("2014-01-01", "cmpd"), ("2015-01-01", "cmpd")} <= methods
    assert sum(r["selected"] for r in results["records"]) == 2  # one per test date

    nb3 = run_notebook(NOTEBOOKS / "03_read_an_evaluation.py", notebook_env, tmp_path)
    text3 = _outputs(nb3)
    report = Path(notebook_env["EWS_NOTEBOOK_OUT"]) / "report"
    assert (report / "evaluation.html").is_file() and (report / "evaluation.json").is_file()
    assert "pct_more_tp" in text3
    assert "Suggested for a supportive review" in text3 or "officer" in text3
    images = [
        o
        for c in nb3.cells  # type: ignore[attr-defined]
        for o in c.get("outputs", [])
        if "data:image/png;base64" in str(o.get("data", {}).get("text/html", ""))
    ]
    assert images, "the plots were not displayed"
    audit = Path(notebook_env["EWS_NOTEBOOK_OUT"]) / "audit" / f"audit-report-{AGENCY}.pdf"
    assert audit.read_bytes().startswith(b"%PDF") and "Identifies officers" in text3

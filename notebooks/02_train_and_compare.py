# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train and compare with the rules
#
# Runs an experiment (`models.experiment.run_experiment`, the same code as `ews train`):
# honest temporal splits, features built once for every as-of date, a model chosen on
# validation splits *inside the training years*, then every model and every rule scored
# at the test dates and compared at equal volume.
#
# Settings from the environment: `EWS_HOME`, `EWS_NOTEBOOK_AGENCY`, `EWS_NOTEBOOK_CONFIG`
# (an experiment YAML; default: the packaged default experiment), `EWS_NOTEBOOK_OUT`
# (where `results.json` goes, read by notebook 03) and `EWS_NOTEBOOK_REGISTER` (`1`, the
# default, registers each label's champion in MLflow so notebook 03 can score with it).

# %%
import os
from pathlib import Path

import pandas as pd

from models.experiment import load_config, run_experiment
from models.report import load_results, vs_rules_table

agency = os.environ.get("EWS_NOTEBOOK_AGENCY") or None
config_path = os.environ.get("EWS_NOTEBOOK_CONFIG") or None
out = Path(os.environ.get("EWS_NOTEBOOK_OUT", "notebook-out"))
register = os.environ.get("EWS_NOTEBOOK_REGISTER", "1") == "1"

config = load_config(config_path, agency=agency)
print(f"experiment {config.name} ({config.hash}); labels: {', '.join(config.label_names())}")
pd.Series(config.model_dump(mode="json", exclude={"grid", "rules"}), dtype=object)

# %% [markdown]
# ## The model grid and the rules to beat

# %%
pd.DataFrame([m.model_dump() for m in config.grid])

# %%
pd.Series(config.rules, name="rules").to_frame()

# %% [markdown]
# ## Run it

# %%
result = run_experiment(config, tracking=register, progress=False)
print("timings (s):", result.timings)
print("\n".join(result.notes))

# %% [markdown]
# ## The splits: training as-of dates per test date (no training label reaches past it)

# %%
splits = pd.DataFrame(result.splits)
splits[["test_as_of", "train_as_of", "label_known_by", "train_label_end"]]

# %% [markdown]
# ## What was chosen, and on which dates (training years only)

# %%
pd.DataFrame(result.selection)[["label", "test_date", "chosen", "metric", "made_on"]]

# %% [markdown]
# ## Models and rules at the test dates (the selected model per label is marked)

# %%
result.table()

# %% [markdown]
# ## The selected model against each rule, flagging as many officers as the rule

# %%
vs_rules_table(load_results(result))

# %%
out.mkdir(parents=True, exist_ok=True)
path = result.save(out / "results.json")
print(f"saved {path}")
for label, champ in result.champions.items():
    where = f" -> registered {champ.registered}" if champ.registered else ""
    print(f"champion for {label}: {champ.candidate['name']}{where}")

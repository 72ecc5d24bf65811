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
# # 01 · Explore an agency
#
# A first look at one agency's snapshot in the workspace: what the data hold, how the
# events run over time, who is in the cohort at each as-of date and how often the outcomes
# we may predict happen (base rates). Everything here calls the `ews` library; the
# notebook only shows.
#
# Settings come from the environment so the same notebook runs on any workspace:
# `EWS_HOME` (the workspace), `EWS_NOTEBOOK_AGENCY` (default: the only agency),
# `EWS_NOTEBOOK_AS_OF` (comma-separated as-of dates; default: every January 1 the data
# cover with a full year after it).

# %%
import os
from datetime import date

import pandas as pd

from ews.store import Workspace
from features.build import build_features
from features.cohort import build_cohort
from features.labels import LABEL_PRESETS, build_labels
from models.experiment import auto_test_dates

agency = os.environ.get("EWS_NOTEBOOK_AGENCY") or None
snapshot = Workspace().snapshot(agency)
manifest = snapshot.manifest
print(f"agency {snapshot.agency}, snapshot {snapshot.id}")
pd.Series({k: v for k, v in manifest.items() if not isinstance(v, dict | list)})

# %% [markdown]
# ## What the snapshot holds

# %%
package = snapshot.read()
pd.DataFrame(
    {
        "rows": {name: len(package.table(name)) for name in ("officers", "events", "assignments")},
    }
)

# %%
package.events["event_type"].value_counts().rename("events").to_frame()

# %% [markdown]
# ## Events over time (by the year the agency learned of them)

# %%
by_year = (
    package.events.assign(year=package.events["reported_date"].dt.year)
    .pivot_table(index="year", columns="event_type", values="event_id", aggfunc="count")
    .fillna(0)
    .astype(int)
)
by_year

# %%
by_year.plot(figsize=(9, 4), title="events per year by type", logy=True);

# %% [markdown]
# ## Findings of complaints, and how long they take to become known

# %%
complaints = package.events[package.events["event_type"] == "complaint"]
findings = complaints["finding"].fillna("(none)").value_counts().rename("complaints").to_frame()
findings

# %%
days_to_finding = (complaints["finding_date"] - complaints["reported_date"]).dt.days
days_to_finding.describe().rename("days from report to finding").to_frame()

# %% [markdown]
# ## Cohort and base rates at the as-of dates
#
# The cohort at t: officers appointed before t and not yet separated (knowledge time: what
# was known before t). Base rate: the share of the cohort with the outcome in the year
# after t.

# %%
env_dates = os.environ.get("EWS_NOTEBOOK_AS_OF")
if env_dates:
    as_of = [date.fromisoformat(d.strip()) for d in env_dates.split(",")]
else:
    as_of = auto_test_dates(snapshot, "1y", 4)
as_of

# %%
cohort = build_cohort(snapshot, as_of)
cohort.groupby("as_of_date").size().rename("officers in cohort").to_frame()

# %%
rates = {}
for name in LABEL_PRESETS:
    labels = build_labels(snapshot, as_of, name)
    rates[name] = labels.groupby("as_of_date")["label"].mean()
base_rates = pd.DataFrame(rates)
base_rates.round(3)

# %% [markdown]
# ## The indicators at the latest as-of date

# %%
features = build_features(snapshot, [as_of[-1]])
print(f"{len(features)} officers x {features.shape[1] - 2} indicators at {as_of[-1]}")
features.describe().T.head(25)

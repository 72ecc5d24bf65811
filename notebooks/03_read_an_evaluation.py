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
# # 03 · Read an evaluation
#
# Reads the `results.json` of an experiment (notebook 02 or `ews train`), shows the
# metrics, the equal-volume comparison with the rules and the report's plots, writes the
# evaluation report (JSON + HTML, as `ews evaluate`), and explains the officers the
# champion flags at the latest test date (as `ews score`).
#
# Settings from the environment: `EWS_HOME`, `EWS_NOTEBOOK_AGENCY`, `EWS_NOTEBOOK_OUT`
# (the folder holding `results.json`; the report is written to its `report/`).

# %%
import os
from datetime import date
from pathlib import Path

import pandas as pd
from IPython.display import HTML, display

from models.report import (
    load_results,
    metrics_table,
    precision_curves,
    rule_bars,
    vs_rules_table,
    write_report,
)
from models.scoring import score

agency = os.environ.get("EWS_NOTEBOOK_AGENCY") or None
out = Path(os.environ.get("EWS_NOTEBOOK_OUT", "notebook-out"))
results = load_results(out / "results.json")
labels = sorted({r["label"] for r in results["records"]})
print(f"experiment {results['config_hash']} on {results['agency']} ({results['snapshot_id']})")
print("labels:", ", ".join(labels))

# %% [markdown]
# ## Metrics per label, test date and method

# %%
metrics = metrics_table(results)
metrics

# %% [markdown]
# ## Selected models against the rules, at the rules' volume
#
# `extra_tp`: officers with the outcome the model flags and the rule misses, net;
# `fewer_fp`: officers without it the rule flags and the model does not, net; with a
# bootstrap 95% interval for the percentage of extra true positives.

# %%
vs = vs_rules_table(results)
vs

# %% [markdown]
# ## Plots

# %%
for label in labels:
    for png in (precision_curves(results, label), rule_bars(results, label)):
        if png:
            display(HTML(f'<img src="data:image/png;base64,{png}"/>'))

# %% [markdown]
# ## The evaluation report, as `ews evaluate` writes it

# %%
json_path, html_path = write_report(results, out / "report")
print(f"wrote {json_path}\nwrote {html_path}")

# %% [markdown]
# ## Who the champion flags at the latest test date, and why
#
# Each flag is an invitation to a supportive review, not a finding; the sentences say which
# indicators raised the score, with peer comparisons where they exist.

# %%
latest = max(date.fromisoformat(r["test_date"]) for r in results["records"])
# The champion was trained on outcomes known after this date, so these flags show how
# explanations read, not how accurate the model is there: the look-ahead is explicit.
flags = score(
    latest, model="champion", agency=agency, explain=True, save=False, allow_lookahead=True
)
top = flags[flags["flagged"]].head(10)
pd.set_option("display.max_colwidth", 200)
top[["rank", "officer_id", "score", "unit", "rules_fired", "explanation"]]

# %%
for row in top.head(3).itertuples():
    print(f"#{row.rank} officer {row.officer_id} (score {row.score:.2f})")
    print(f"  {row.explanation}\n")

# %% [markdown]
# ## The credentialing reviewer's audit report, as `ews audit-report` writes it
#
# The same function the command and the reviewers' pages call: the checklist below is
# answered from the data, each item pointing at the section of the report that is its
# evidence. Sections whose data are not yet there (no predictions file beside these
# results, no reviews, no drift checks) say so instead of giving a figure.

# %%
from models.audit_report import build_report
from models.audit_report import write_report as write_audit_report

audit = build_report(agency or str(results["agency"]))
paths = write_audit_report(audit, out / "audit")
display(pd.DataFrame(audit.data["checklist"])[["ask", "status", "figure"]])
print(f"wrote {paths['html']}\nwrote {paths['pdf']}")

"""Scoring: who to flag at an as-of date, why, and with what.

:func:`score` loads a registered model (by default the agency's ``champion``), rebuilds its
features at the as-of date from the agency's current snapshot with
:func:`features.build.build_features` (the very code path the experiment trained on, with the
same feature spec, checked by hash, and the same cohort), ranks the officers, flags the top
``flag_top_pct`` percent (or as many as a named rule flags), lists the rules that fire for
each officer and explains each score in sentences (:mod:`models.explain`).

Every row carries its provenance: the model name and version, the data snapshot it was scored
on and the one the model was trained on, the feature-spec and experiment-config hashes, the
seed and the as-of date. The flags are saved in the application database (``ews.flagstore``,
where the service reads them, with a Parquet export in the workspace) and, if asked, to a
Parquet or CSV file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ews.store import Snapshot


class ScoringError(ValueError):
    """Scoring cannot proceed (no model, no data, a spec that changed since training)."""


class StaleDateError(ScoringError):
    """An as-of date too far past the data's end (``ews score`` exits 2)."""


#: How many days past the data's last reported event an as-of date may lie (``ews score
#: --max-staleness``): about a quarter, the time an agency's next export takes.
DEFAULT_MAX_STALENESS_DAYS = 92


def data_span(source: Any) -> tuple[dt.date, dt.date]:
    """The first and last reported date of the events (what the data cover)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from features.engines import package_folder

    col = pq.read_table(Path(package_folder(source)) / "events.parquet", columns=["reported_date"])
    span = pc.min_max(col.column("reported_date")).as_py()
    if span["min"] is None:
        raise ScoringError("the data hold no events")
    first, last = (
        v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else v.date()
        for v in (span["min"], span["max"])
    )
    return first, last


def staleness(
    as_of: dt.date, data_end: dt.date, max_days: int = DEFAULT_MAX_STALENESS_DAYS
) -> str | None:
    """Why scores at ``as_of`` would be stale (the date lies more than ``max_days`` past
    ``data_end``, the last reported event the data hold), or None when they would not."""
    allowed = data_end + dt.timedelta(days=max_days)
    if as_of <= allowed:
        return None
    return (
        f"the as-of date {as_of} is {(as_of - data_end).days} days after the data end "
        f"{data_end} (the last reported event); scores are allowed up to {max_days} days "
        f"after it (until {allowed}): what happened since is not in the data"
    )


def run_freshness(
    as_of: dt.date, provenance: dict[str, Any] | None, data_end: dt.date | None = None
) -> dict[str, Any]:
    """Whether a stored scoring run at ``as_of`` would now be refused as stale (see
    :func:`staleness`, default allowance): ``{"data_end", "stale", "stale_reason"}``;
    ``stale`` is None when the run records no data end and none is given."""
    if data_end is None:
        raw = (provenance or {}).get("data_end")
        try:
            data_end = dt.date.fromisoformat(str(raw)[:10]) if raw else None
        except ValueError:
            data_end = None
    if data_end is None:
        return {"data_end": None, "stale": None, "stale_reason": None}
    why = staleness(as_of, data_end)
    return {"data_end": data_end.isoformat(), "stale": why is not None, "stale_reason": why}


def _percentile(score: np.ndarray) -> np.ndarray:
    """Share of officers (in %) scoring at or below each officer."""
    import pandas as pd

    return pd.Series(score).rank(method="max", pct=True).to_numpy() * 100.0


def _explanations(
    model: Any,
    X: pd.DataFrame,
    descriptions: dict[str, str],
    context: pd.DataFrame,
    rules: dict[str, Any],
    background: pd.DataFrame | None,
    top_k: int,
    officer_ids: list[str],
) -> tuple[list[str], list[str]]:
    """(text, factors JSON) per row from :func:`models.explain.explain`."""
    from models.explain import explain

    out = explain(
        model,
        X,
        descriptions=descriptions,
        context=context,
        rules=rules or None,
        top_k=top_k,
        background=background,
        officer_ids=officer_ids,
    )
    texts = [e.text for e in out]
    # the rules met travel in words (title, the whole rule, what was met); attributes and
    # exposure travel beside the reasons, marked as context; when no behaviour is at or above
    # its peers, a summary first says so and which behaviours carried the score
    factors = [
        json.dumps(
            ([{"summary": True, "sentence": e.summary}] if e.summary else [])
            + e.factors
            + [{"rule": r["name"], **r, "sentence": r["reason"]} for r in e.rules]
            + [{"context": True, "sentence": c} for c in e.context],
            default=str,
        )
        for e in out
    ]
    return texts, factors


# Behaviours a supervisor follows over time, in order of preference (those the spec has).
KEY_INDICATORS = (
    "use_of_force_1y_count",
    "complaint_1y_count",
    "force_complaint_1y_count",
    "complaint_1y_sustained",
    "vehicle_pursuit_1y_count",
    "lawsuit_1y_count",
)


def key_indicators(features: pd.DataFrame, descriptions: dict[str, str], n: int = 4) -> list[str]:
    """Per officer (JSON): for up to ``n`` behaviours of :data:`KEY_INDICATORS`, the officer's
    value and the means of their unit and their rank in the scored cohort, each with its words
    ("use-of-force reports in the last year"). The officer page charts these over the scored
    dates; they are the spec's own indicators, so no count is defined twice."""
    import re

    cols = [c for c in KEY_INDICATORS if c in features.columns][:n]
    means: dict[str, Any] = {}
    for kind in ("unit", "rank"):
        if kind in features.columns and cols:
            groups = features[kind].astype("string")
            means[kind] = features[cols].astype("float64").groupby(groups).transform("mean")
    words = {
        c: re.sub(r"^\s*\{value[^}]*\}\s*", "", descriptions.get(c, c.replace("_", " ")))
        for c in cols
    }
    out = []
    own = features[cols].astype("float64").reset_index(drop=True)
    peers = {k: m.reset_index(drop=True) for k, m in means.items()}

    def num(v: Any) -> float | None:
        return None if v != v else round(float(v), 3)  # NaN -> None

    for i in range(len(features)):
        out.append(
            json.dumps(
                {
                    c: {
                        "label": words[c],
                        "officer": num(own.at[i, c]),
                        **{k: num(m.at[i, c]) for k, m in peers.items()},
                    }
                    for c in cols
                }
            )
        )
    return out


def model_and_data(
    model: str = "champion",
    agency: str | None = None,
    snapshot: str | None = None,
    source: Snapshot | Path | None = None,
    uri: str | None = None,
) -> tuple[Any, Any, Snapshot | Path, str, Any]:
    """A registered model with what scores it: its experiment config, the data (the agency's
    snapshot, or ``source``), the agency and the feature spec, checked to be the one the
    model was trained with. Shared by scoring and drift monitoring."""
    from ews.store import Snapshot, StoreError, Workspace
    from models import registry
    from models.experiment import ExperimentConfig, load_feature_spec

    if agency is None and source is None and model in (registry.CHAMPION, registry.CHALLENGER):
        agencies = Workspace().agencies()
        if len(agencies) == 1:  # the champion of the workspace's only agency
            agency = agencies[0]
    try:
        loaded = registry.load_model(model, agency=agency, uri=uri)
    except registry.RegistryError as exc:
        raise ScoringError(str(exc)) from exc
    tags = loaded.tags
    if loaded.config is None:
        raise ScoringError(f"{loaded.name} v{loaded.version} has no experiment config logged")
    config = ExperimentConfig.model_validate(loaded.config)
    agency = agency or tags.get("ews.agency") or None
    if source is None:
        try:
            src: Snapshot | Path = Workspace().snapshot(agency, snapshot)
        except StoreError as exc:
            raise ScoringError(f"{exc} (run `ews ingest` first)") from exc
    else:
        src = source
    if isinstance(src, Snapshot):
        agency = src.agency
    agency = agency or "default"

    spec = load_feature_spec(config.feature_spec)
    if tags.get("ews.spec_hash") and str(spec.hash) != tags["ews.spec_hash"]:
        raise ScoringError(
            f"the feature spec changed since {loaded.name} v{loaded.version} was trained "
            f"(hash {spec.hash}, trained on {tags['ews.spec_hash']}): retrain with `ews train`"
        )
    return loaded, config, src, agency, spec


def label_cutoff(tags: dict[str, str]) -> dt.date | None:
    """The last date whose outcomes a registered model's training labels could see: its
    ``ews.label_known_by`` tag (label maturity), None when it records none."""
    known = tags.get("ews.label_known_by") or ""
    return dt.date.fromisoformat(known) if known else None


def check_lookahead(name: str, version: str, tags: dict[str, str], as_of: dt.date) -> str | None:
    """Why scoring at ``as_of`` with this model would look ahead (its training labels count
    outcomes known after ``as_of``), or None when it would not."""
    cutoff = label_cutoff(tags)
    if cutoff is None:
        return (
            f"{name} v{version} records no label cutoff (trained without label maturity), so "
            f"its training labels may count outcomes known after {as_of}"
        )
    if as_of < cutoff:
        return (
            f"{name} v{version} was trained on outcomes known up to {cutoff} (its label "
            f"cutoff), after the as-of date {as_of}: its scores there would use the future. "
            f"Score on or after {cutoff}, or name an older model (--model NAME/VERSION)"
        )
    return None


def score(
    as_of: dt.date,
    model: str = "champion",
    agency: str | None = None,
    snapshot: str | None = None,
    source: Snapshot | Path | None = None,
    flag_top_pct: float | None = None,
    flag_like_rule: str | None = None,
    explain: bool = True,
    top_k: int = 3,
    out: Path | None = None,
    save: bool = True,
    uri: str | None = None,
    progress: bool = False,
    allow_lookahead: bool = False,
    max_staleness_days: int = DEFAULT_MAX_STALENESS_DAYS,
) -> pd.DataFrame:
    """Score every officer of the cohort at ``as_of`` with a registered model.

    A model whose training labels count outcomes known after ``as_of`` (its label cutoff,
    see :func:`check_lookahead`) is refused unless ``allow_lookahead``; then the flags say
    so in ``frame.attrs["lookahead"]`` and a warning is raised. A date more than
    ``max_staleness_days`` after the data's last reported event is refused
    (:class:`StaleDateError`): its scores would rank officers on a past that stopped.

    Args:
        as_of: the as-of date (only what was known before it is used).
        model: ``champion`` (the agency's model with that alias), ``NAME``, ``NAME@ALIAS`` or
            ``NAME/VERSION``.
        agency, snapshot: which workspace data (default: the model's agency, current snapshot).
        source: a Snapshot or normalized package folder instead of the workspace.
        flag_top_pct: flag this top share (default: the experiment's ``flag_top_pct``).
        flag_like_rule: flag as many officers as this rule (e.g. ``cmpd``) flags at ``as_of``.
        explain: add sentences explaining each score (``explanation``, ``factors``).
        out: also write the flags to this ``.parquet`` or ``.csv`` file.
        save: save the flags in the application database (and their Parquet export,
            ``EWS_HOME/flags/<agency>/<as_of>.parquet``).

    Returns the flags, best score first: officer_id, score, rank (1 = highest), percentile,
    flagged, rules_fired (JSON list), explanation, factors (JSON), indicators (JSON: see
    :func:`key_indicators`), unit, peer_rank, and the
    provenance columns (model_name, model_version, snapshot_id, train_snapshot_id, spec_hash,
    config_hash, seed, as_of_date, scored_at).
    """
    import numpy as np
    import pandas as pd

    from ews.store import Snapshot
    from features.build import build_features
    from models.experiment import cohort_spec
    from models.metrics import rank_order, top_flags

    if isinstance(as_of, dt.datetime):
        as_of = as_of.date()
    loaded, config, src, agency, spec = model_and_data(model, agency, snapshot, source, uri)
    tags = loaded.tags
    if max_staleness_days < 0:
        raise StaleDateError(f"max_staleness_days: at least 0, got {max_staleness_days}")
    _, data_end = data_span(src)
    stale = staleness(as_of, data_end, max_staleness_days)
    if stale:
        raise StaleDateError(
            f"{stale}. Ingest newer data (`ews ingest`), or allow more days with "
            "--max-staleness DAYS"
        )
    lookahead = check_lookahead(loaded.name, loaded.version, tags, as_of)
    if lookahead and not allow_lookahead:
        raise ScoringError(f"{lookahead}; --allow-lookahead scores anyway")
    if lookahead:
        import warnings

        warnings.warn(f"look-ahead allowed: {lookahead}", stacklevel=2)
    snapshot_id = src.id if isinstance(src, Snapshot) else Path(src).name
    features = build_features(
        src, [as_of], spec=spec, cohort=cohort_spec(config.cohort), progress=progress
    )
    if features.empty:
        raise ScoringError(f"no officer is in the cohort at {as_of}")
    columns = loaded.feature_names
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ScoringError(f"features missing at scoring time: {', '.join(missing)}")
    X = features[columns].astype("float64").reset_index(drop=True)
    scores = np.asarray(loaded.model.predict_proba(X)[:, 1], dtype=float)
    seed = int(tags.get("ews.seed") or config.seed or 0)
    order = rank_order(scores, seed)
    rank = np.empty(len(scores), dtype=np.int64)
    rank[order] = np.arange(1, len(scores) + 1)

    rules = loaded.rules or {}
    fired = {name: np.asarray(rule.predict(X)).astype(bool) for name, rule in rules.items()}
    if flag_like_rule is not None:
        if flag_like_rule not in fired:
            known = ", ".join(sorted(fired)) or "none"
            raise ScoringError(
                f"no rule {flag_like_rule!r} was fitted with the model (have {known})"
            )
        n_flag = int(fired[flag_like_rule].sum())
        flag_rule = f"volume of rule {flag_like_rule}"
    else:
        pct = flag_top_pct if flag_top_pct is not None else config.flag_top_pct
        n_flag = max(1, int(np.ceil(pct / 100.0 * len(scores) - 1e-9)))
        flag_rule = f"top {pct:g}%"
    flagged = top_flags(scores, n_flag, seed)

    def context_col(name: str) -> Any:
        return features[name].reset_index(drop=True) if name in features else pd.NA

    frame = pd.DataFrame(
        {
            "officer_id": features["officer_id"].astype(str).reset_index(drop=True),
            "score": scores,
            "rank": rank,
            "percentile": _percentile(scores),
            "flagged": flagged,
            "flag_rule": flag_rule,
            "rules_fired": [
                json.dumps([n for n, f in fired.items() if f[i]]) for i in range(len(scores))
            ],
            "unit": context_col("unit"),
            "peer_rank": context_col("rank"),
        }
    )
    descriptions = {c.name: c.description_template for c in spec.columns}
    frame["indicators"] = key_indicators(features, descriptions)
    if explain:
        ctx_cols = [c for c in features.columns if c in ("unit", "rank") or c.endswith("_ratio")]
        context = features[ctx_cols].reset_index(drop=True)
        texts, factors = _explanations(
            loaded.model,
            X,
            descriptions,
            context,
            rules,
            loaded.background,
            top_k,
            frame["officer_id"].tolist(),
        )
        frame["explanation"] = texts
        frame["factors"] = factors
    frame = frame.assign(
        model_name=loaded.name,
        model_version=loaded.version,
        snapshot_id=snapshot_id,
        train_snapshot_id=tags.get("ews.snapshot_id", ""),
        spec_hash=str(spec.hash),
        config_hash=tags.get("ews.config_hash", ""),
        label=tags.get("ews.label", ""),
        seed=seed,
        data_end=data_end.isoformat(),
        as_of_date=pd.Timestamp(as_of),
        scored_at=pd.Timestamp.now(tz="UTC").tz_localize(None),
    )
    frame = frame.sort_values("rank").reset_index(drop=True)
    frame.attrs["lookahead"] = lookahead
    frame.attrs["agency"] = agency
    if save:
        from ews.flagstore import save_flags

        save_flags(agency, as_of, frame)
    if out is not None:
        write_flags(frame, Path(out))
    return frame


def write_flags(frame: pd.DataFrame, path: Path) -> Path:
    """Write flags as Parquet (``.parquet``) or CSV (``.csv``, ``.csv.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    elif name.endswith((".csv", ".csv.gz")):
        frame.to_csv(path, index=False)
    else:
        raise ScoringError(f"{path}: write flags to a .parquet or .csv file")
    return path

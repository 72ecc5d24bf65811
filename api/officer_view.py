"""The reasons of a flag as a supervisor reads them: in plain words (no rule keys, no vendor or
agency jargon), each with the officer's events that count toward it, and numbers rounded for
people. Used by the flag list and the officer page (api.pages).

Which events count toward a reason follows the feature spec's definition of the indicator
(the default spec's; a reason whose indicator it does not define links to no event): events
of the indicator's source (event type, category prefix) reported in its window before the
as-of date, only sustained findings for a ``sustained`` count.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any


def rule_words(rule: Mapping[str, Any]) -> str:
    from models.rules import RULE_PLAIN_WORDS

    key = str(rule.get("name") or rule.get("rule") or "")
    if key in RULE_PLAIN_WORDS:
        return RULE_PLAIN_WORDS[key]
    title = str(rule.get("title") or key.replace("_", " ") or "rule")
    return f"the {title}" if "rule" in title else f"the {title} rule"


def _sentence(text: str) -> str:
    text = text.strip().replace("; in the top ", "; among the top ")
    if text.startswith("in the top "):
        text = "among the top " + text[len("in the top ") :]
    return text[:1].upper() + text[1:]


@functools.lru_cache(maxsize=1)
def _spec_maps() -> tuple[dict[str, Any], list[tuple[str, str]], dict[str, Any]]:
    """The default spec's columns by name, (phrase, column) of its counts (longest phrase
    first), and its sources."""
    from features.spec import default_spec

    spec = default_spec()
    columns = {c.name: c for c in spec.columns}
    phrases = []
    for c in spec.columns:
        if c.family in ("count", "sustained") and c.description_template.startswith("{value"):
            phrase = c.description_template.split("}", 1)[1].strip()
            if phrase and "{" not in phrase:
                phrases.append((phrase, c.name))
    phrases.sort(key=lambda p: -len(p[0]))
    return columns, phrases, dict(spec.sources)


def features_of_phrase(text: str) -> list[str]:
    """The count indicators a rule's reason is about ("2 or more complaints in the last year"
    -> [complaint_1y_count]; one per condition met), longest phrase first."""
    _, phrases, _ = _spec_maps()
    found = []
    for phrase, name in phrases:
        if phrase in text:
            found.append(name)
            text = text.replace(phrase, "\x00")
    return found


def counted(feature: str | None, events: Sequence[Mapping[str, Any]], as_of: dt.date) -> list[int]:
    """Indexes of ``events`` (the officer's timeline at ``as_of``) that count toward the
    indicator ``feature`` (its base indicator for a peer comparison)."""
    from features.durations import parse_window

    columns, _, sources = _spec_maps()
    info = columns.get(feature or "")
    if info is not None and info.base:
        info = columns.get(info.base)
    if info is None or info.source not in sources or info.window is None:
        return []
    source = sources[info.source]
    window = parse_window(info.window)
    start = window.before(as_of) if window is not None else dt.date.min
    metric = info.metric or "count"
    out = []
    for i, e in enumerate(events):
        day = _day(e.get("reported_date"))
        if e.get("event_type") != source.event_type or day is None or not start <= day < as_of:
            continue
        if source.category_prefix and not str(e.get("category") or "").startswith(
            source.category_prefix
        ):
            continue
        if metric == "sustained" and e.get("finding") != "sustained":
            continue
        out.append(i)
    return out


def _day(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def reason_items(
    factors: Sequence[Any],
    rules_fired: Sequence[str],
    events: Sequence[Mapping[str, Any]] = (),
    as_of: dt.date | None = None,
) -> list[dict[str, Any]]:
    """The reasons of a flag, in order: the indicators, then what the warning rules the
    officer also meets found (one line per finding, the rules named in words). Each item:
    ``text``, ``features`` (the indicators it is about) and ``events`` (indexes into
    ``events``, the ones that count toward it)."""
    items: list[dict[str, Any]] = []

    def add(text: str, features: list[str]) -> None:
        hits: set[int] = set()
        if events and as_of is not None:
            for feature in features:
                hits.update(counted(feature, events, as_of))
        items.append({"text": text, "features": features, "events": sorted(hits)})

    dicts = [f for f in factors if isinstance(f, dict)]
    summarised = any(f.get("summary") for f in dicts)  # it names what carried the score
    for f in dicts:
        if summarised and f.get("carried"):
            continue
        if f.get("sentence") and not f.get("context") and not f.get("rule"):
            add(str(f["sentence"]), [str(f["feature"])] if f.get("feature") else [])
    same: dict[str, list[str]] = {}
    worded = [f for f in dicts if f.get("rule")]
    for r in worded:
        same.setdefault(str(r.get("reason") or ""), []).append(rule_words(r))
    named = {str(r.get("rule")) for r in worded}
    for key in (r for r in rules_fired if r not in named):
        same.setdefault("", []).append(rule_words({"name": key}))
    for reason, words in same.items():
        by = " and ".join(dict.fromkeys(words))
        if reason:
            add(f"{_sentence(reason)} ({by})", features_of_phrase(reason))
        else:
            add(f"Also flagged by {by}", [])
    return items


def context_factors(factors: Sequence[Any]) -> list[str]:
    """The factors that are context (tenure, age, activity), never reasons."""
    return [str(f["sentence"]) for f in factors if isinstance(f, dict) and f.get("context")]


def for_people(value: Any) -> str:
    """A mean or rate rounded for people: whole numbers as they are, else one decimal
    ("1.1", "0.5"), "under 0.1" for a small positive one; "–" when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    if v.is_integer():
        return str(int(v))
    if 0 < abs(v) < 0.05:
        return "under 0.1"
    return f"{v:.1f}".removesuffix(".0")

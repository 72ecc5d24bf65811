"""What a model may see: numeric indicator columns, never protected attributes.

Race and sex (``ews.contract.PROTECTED_ATTRIBUTES``) are kept in the data for
fairness audits only; a rule or model given them as inputs is refused here, in
one place, so every estimator and explanation applies the same check.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ews.contract import PROTECTED_ATTRIBUTES

__all__ = ["ID_COLUMNS", "check_no_protected", "numeric_feature_columns"]

#: Columns of a feature frame that identify a row, not describe an officer.
ID_COLUMNS = ("officer_id", "as_of_date")


def _is_protected(name: str) -> bool:
    low = name.lower()
    return any(low == p or low.startswith(p + "_") for p in PROTECTED_ATTRIBUTES)


def check_no_protected(columns: Iterable[object]) -> None:
    """Raise ValueError if any column is a protected attribute (``race``, ``sex``,
    or an encoding of them such as ``race_black``)."""
    bad = [str(c) for c in columns if isinstance(c, str) and _is_protected(c)]
    if bad:
        raise ValueError(
            f"protected attributes are never model inputs: {bad}; they are used only "
            "for fairness audits (ews.contract.PROTECTED_ATTRIBUTES)"
        )


def numeric_feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model input columns of a feature frame: numeric, not ids, not protected.

    String columns such as ``unit`` and ``rank`` are left out (they give peer
    context to explanations); a protected attribute is an error, not silently
    dropped, so a mistake upstream is seen.
    """
    check_no_protected(frame.columns)
    return [
        str(c)
        for c in frame.columns
        if c not in ID_COLUMNS
        and (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]

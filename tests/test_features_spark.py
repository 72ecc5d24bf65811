"""Spark (local) computes the same features and labels as the pandas reference.

One Spark session for the whole test session (startup takes 5-12 s) and few queries: Spark's
per-query overhead is large.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from features_reference import (  # noqa: I001
    ANCHORS,
    TEST_SPEC,
    assert_frames_equal,
    random_package,
    read,
    ref_features,
    ref_labels,
    write_package,
)

from features.build import build_features
from features.cohort import CohortSpec
from features.labels import LABEL_PRESETS, build_labels
from features.spec import spec_from_dict

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
SPEC = spec_from_dict(TEST_SPEC)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("EWS_SPARK_PARTITIONS", "2")  # tiny data: few shuffle tasks
    from features.engines import spark_session

    session = spark_session()
    yield session


@pytest.mark.parametrize("seed, require", [(29, None), (24, "rank")])
def test_spark_features_equal_the_reference(
    spark: Any, tmp_path: Path, seed: int, require: str | None
) -> None:
    folder = write_package(tmp_path, random_package(seed))
    cohort = CohortSpec(require_assignment=require) if require else None
    got = build_features(folder, ANCHORS, SPEC, engine="spark", cohort=cohort)
    want = ref_features(read(folder), ANCHORS, SPEC, require)
    assert len(want) > 0
    assert want["complaint_network_1y_count"].sum() > 0  # the package has co-accused
    assert want["complaint_network_1y_complaint_1y_sustained_share"].notna().any()
    assert_frames_equal(got, want, SPEC)


def test_spark_labels_equal_the_reference(spark: Any, tmp_path: Path) -> None:
    import datetime as dt

    folder = write_package(tmp_path, random_package(10))
    label = LABEL_PRESETS["sustained_or_force"]
    kb = dt.date(2020, 9, 1)
    got = build_labels(folder, ANCHORS, label, known_by=kb, engine="spark")
    want = ref_labels(read(folder), ANCHORS, label, kb)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)

"""klingcost.jobclass: what mutation testing showed test_jobclass.py never asked. A class read
back from a hold (its columns coalesced, its defaults missing) must re-price as the request it
was, and the ledger must store a hand-written meta as SQLite's own column affinity would."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from klingcost.jobclass import COLUMNS, JobClass, columns_of_meta
from klingcost.request import validate_request

T2V = "videos/text2video"
OMNI = "videos/omni-video"
IMAGES = "images/generations"


def _revalidated(job: JobClass) -> JobClass:
    """The class of the request ``job.to_body()`` gives, as calibration re-prices it."""
    request = validate_request(*job.to_body())
    assert request.warnings == ()  # every field of the body is one Kling knows
    return request.job


@pytest.mark.parametrize(
    "row",
    [
        {"endpoint": T2V, "model": ""},  # a coalesced NULL model
        {"endpoint": "", "model": "kling-v1"},
        {"endpoint": T2V, "model": None},
    ],
)
def test_a_hold_missing_its_endpoint_or_its_model_has_no_class(row: dict[str, object]) -> None:
    full = dict.fromkeys(COLUMNS, 0) | {"mode": "std", "duration": "5"} | row
    assert JobClass.from_row(full) is None


def test_a_class_of_several_images_re_prices_as_that_many() -> None:
    job = JobClass(IMAGES, "kling-v1", None, None, n=4)
    assert job.to_body()[1]["n"] == 4
    assert _revalidated(job) == job


def test_an_image_class_read_back_with_no_count_re_prices_as_one_image() -> None:
    # A hold written before `n` was stored: its column is NULL, coalesced to 0 by reports.
    row = dict.fromkeys(COLUMNS, 0) | {"endpoint": IMAGES, "model": "kling-v1", "mode": None}
    job = JobClass.from_row(row | {"duration": None})
    assert job is not None and job.n == 0
    assert _revalidated(job) == JobClass(IMAGES, "kling-v1", None, None, n=1)


@pytest.mark.parametrize(
    ("endpoint", "model", "mode"),
    [(T2V, "kling-v1", "std"), (OMNI, "kling-video-o1", "pro")],
)
def test_a_clip_read_back_without_a_duration_re_prices_at_klings_default_5_s(
    endpoint: str, model: str, mode: str
) -> None:
    job = JobClass(endpoint, model, mode, None)
    assert job.to_body()[1]["duration"] == 5
    assert _revalidated(job) == JobClass(endpoint, model, mode, 5)


def test_an_omni_clip_from_a_reference_image_re_prices_with_its_image() -> None:
    job = JobClass(OMNI, "kling-video-o1", "pro", 5, reference_image=True)
    assert job.to_body()[1]["image_list"] == [{"image_url": "https://example.com/reference.png"}]
    assert _revalidated(job) == job


def test_a_signed_digit_string_in_an_integer_column_is_stored_as_its_number() -> None:
    # SQLite's INTEGER affinity turns "-1" and " 2 " into numbers; PostgreSQL's BIGINT needs them.
    meta = {"endpoint": T2V, "model": "kling-v1", "sound": "-1", "n": " 2 ", "mode": "std"}
    assert columns_of_meta(meta) == (T2V, "kling-v1", "std", None, -1, None, None, 2)
    # Text that is no number stays as given (SQLite keeps it as text too).
    for text in ("2-", "X4"):
        assert columns_of_meta({"n": text})[COLUMNS.index("n")] == text


@pytest.mark.parametrize("n", [None, ""])
def test_a_hold_with_no_count_stored_reads_as_one_job(n: object) -> None:
    # A meta written by hand without `n`, or its column NULL (or coalesced to ''): one job.
    row = {"endpoint": T2V, "model": "kling-v1", "mode": "std", "duration": "5", "n": n}
    row |= dict.fromkeys(("sound", "video_reference", "reference_image"), None)
    assert JobClass.from_row(row) == JobClass(T2V, "kling-v1", "std", 5, n=1)
    meta = {"endpoint": T2V, "model": "kling-v1", "mode": "std", "duration": 5}
    assert JobClass.from_meta(meta) == JobClass(T2V, "kling-v1", "std", 5, n=1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "4k"),
        ("duration", 10),
        ("sound", True),
        ("video_reference", True),
        ("reference_image", True),
        ("n", 2),
        ("voice", True),
        ("resolution", "2k"),
        ("held_duration", True),
    ],
)
def test_a_report_lists_a_class_without_an_option_before_the_one_with_it(
    field: str, value: Any
) -> None:
    # Reports order classes by sort_key: a field not set (None, False, 1) sorts first.
    base = JobClass(T2V, "kling-v3", "pro", 5)
    if field in ("mode", "duration"):
        unset: dict[str, Any] = {field: None}  # not given: sorts before any value
        base = dataclasses.replace(base, **unset)
    changes: dict[str, Any] = {field: value}
    other = dataclasses.replace(base, **changes)
    assert sorted([other, base], key=JobClass.sort_key) == [base, other]
    assert sorted([base, other], key=JobClass.sort_key) == [base, other]

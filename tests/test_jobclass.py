"""The job class: derived from real requests, stored as holds store it, read back, re-priced.

Pure and fast (mutation testing runs it); a real ledger storing classes: test_jobclass_ledger.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klingcost.errors import RequestValidationError, UnpricedRequestError
from klingcost.jobclass import COLUMNS, JobClass, columns_of_meta
from klingcost.ledger import migrations
from klingcost.listing import catalogue_classes
from klingcost.pricing import estimate, price
from klingcost.request import ENDPOINTS, ValidatedRequest, validate_request
from klingcost.sheet import load_sheet

T2V = "videos/text2video"
I2V = "videos/image2video"
OMNI = "videos/omni-video"
IMAGES = "images/generations"
MULTI = "videos/multi-image2video"
URL = "https://example.com/a.png"


def _narrowed(job: JobClass) -> JobClass:
    """What a hold keeps of a class: its eight columns (no voice, resolution, held)."""
    return dataclasses.replace(job, voice=False, resolution=None, held_duration=False)


# --- what a hold stores, as it stored it before the class had a type ---------------------------

#: Bodies of every endpoint and the meta guard.job_class wrote for each before JobClass (the
#: literal dicts of the ledgers written so far: they must not change).
STORED_TODAY: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        T2V,
        {"model_name": "kling-v1-5", "mode": "pro", "duration": "10", "prompt": "a ship"},
        {
            "endpoint": T2V,
            "model": "kling-v1-5",
            "mode": "pro",
            "duration": 10,
            "sound": 0,
            "video_reference": 0,
            "reference_image": 0,
            "n": 1,
        },
    ),
    (
        T2V,
        {"model_name": "kling-v2-6", "mode": "pro", "sound": "on", "prompt": "a ship"},
        {
            "endpoint": T2V,
            "model": "kling-v2-6",
            "mode": "pro",
            "duration": 5,
            "sound": 1,
            "video_reference": 0,
            "reference_image": 0,
            "n": 1,
        },
    ),
    (
        I2V,
        {"image": URL, "prompt": "moves"},
        {
            "endpoint": I2V,
            "model": "kling-v1",
            "mode": "std",
            "duration": 5,
            "sound": 0,
            "video_reference": 0,
            "reference_image": 1,
            "n": 1,
        },
    ),
    (
        MULTI,
        {"image_list": [{"image": URL}], "prompt": "a ship"},
        {
            "endpoint": MULTI,
            "model": "kling-v1-6",
            "mode": "std",
            "duration": 5,
            "sound": 0,
            "video_reference": 0,
            "reference_image": 1,
            "n": 1,
        },
    ),
    (
        OMNI,
        {"prompt": "a ship", "video_list": [{"video_url": URL}], "duration": 10},
        {
            "endpoint": OMNI,
            "model": "kling-video-o1",
            "mode": "pro",
            "duration": 10,
            "sound": 0,
            "video_reference": 1,
            "reference_image": 0,
            "n": 1,
        },
    ),
    (
        IMAGES,
        {"prompt": "a cat", "n": "4", "image": URL},
        {
            "endpoint": IMAGES,
            "model": "kling-v1",
            "mode": None,
            "duration": None,
            "sound": 0,
            "video_reference": 0,
            "reference_image": 1,
            "n": 4,
        },
    ),
]


def test_the_stored_examples_cover_every_endpoint() -> None:
    assert {endpoint for endpoint, _body, _meta in STORED_TODAY} == set(ENDPOINTS)


@pytest.mark.parametrize(("endpoint", "body", "meta"), STORED_TODAY)
def test_to_meta_is_what_holds_stored_before(
    endpoint: str, body: dict[str, Any], meta: dict[str, Any]
) -> None:
    job = estimate(endpoint, body).request.job
    assert job.to_meta() == meta
    assert list(job.to_meta()) == list(COLUMNS)  # same keys, in the columns' order
    assert JobClass.from_meta(job.to_meta()) == _narrowed(job)


def test_the_columns_are_the_ones_migration_0002_added() -> None:
    # The migration keeps its own frozen copy, as a shipped migration must.
    assert COLUMNS == migrations.CLASS_COLUMNS_0002


# --- from real requests, for every class the catalogue takes ------------------------------------


def test_every_catalogue_class_round_trips_through_a_real_request() -> None:
    sheet = load_sheet()
    classes = list(catalogue_classes(sheet))
    taken: Counter[str] = Counter()
    refused: list[JobClass] = []
    for job in classes:
        endpoint, body = job.to_body()
        try:
            request = validate_request(endpoint, body, sheet=sheet)
        except RequestValidationError:
            refused.append(job)
            continue
        assert request.job == job, body
        assert JobClass.from_request(request) == job
        with contextlib.suppress(UnpricedRequestError):  # taken, not priced (kling-v3 4k voice)
            assert price(request, sheet=sheet).request.job == job
        taken[endpoint] += 1
    assert set(taken) == set(ENDPOINTS)  # every endpoint, through a real body
    assert sum(taken.values()) > 400
    # The catalogue lists omni-video with sound and a video too; Kling refuses sound with a video.
    assert refused and all(j.endpoint == OMNI and j.sound and j.video_reference for j in refused)


def test_a_video_edit_without_a_duration_round_trips_as_held() -> None:
    request = validate_request(
        OMNI, {"prompt": "edit", "video_list": [{"video_url": URL, "refer_type": "base"}]}
    )
    job = request.job
    assert job.held_duration and job.video_reference
    assert validate_request(*job.to_body()).job == job
    assert job.to_meta()["duration"] == job.duration  # stored as the seconds held


def test_voices_and_resolution_are_part_of_the_class() -> None:
    silent = validate_request(T2V, {"prompt": "a", "model_name": "kling-v2-6", "mode": "pro"})
    sound = validate_request(
        T2V, {"prompt": "a", "model_name": "kling-v2-6", "mode": "pro", "sound": "on"}
    )
    voiced = validate_request(
        T2V,
        {
            "prompt": "a",
            "model_name": "kling-v2-6",
            "mode": "pro",
            "sound": "on",
            "voice_list": [{"voice_id": "v"}],
        },
    )
    assert len({silent.job, sound.job, voiced.job}) == 3
    assert voiced.job.voice and voiced.job.label.endswith("voice")
    assert validate_request(*voiced.job.to_body()).job == voiced.job


def test_the_requests_key_names_the_same_fields_as_the_class() -> None:
    fields = [f.name for f in dataclasses.fields(JobClass)]
    request_fields = [f for f in ValidatedRequest._fields if f not in ("parsed", "warnings")]
    assert request_fields == fields  # job_key is positional: the orders must agree
    request = validate_request(T2V, {"prompt": "a", "duration": 10, "mode": "pro"})
    assert request.job_key == dataclasses.astuple(request.job)


# --- read back from rows and meta ---------------------------------------------------------------


def test_a_hold_without_a_class_reads_as_none() -> None:
    assert JobClass.from_meta(None) is None
    assert JobClass.from_meta({}) is None
    assert JobClass.from_meta({"provider": "openai-hk"}) is None
    coalesced = dict.fromkeys(COLUMNS, "") | {"sound": 0, "n": 0}
    assert JobClass.from_row(coalesced) is None
    assert JobClass.from_row(dict.fromkeys(COLUMNS)) is None


def test_a_hand_written_meta_that_is_no_class_reads_as_none() -> None:
    meta = {"endpoint": T2V, "model": "kling-v1", "duration": "five"}
    assert JobClass.from_meta(meta) is None


def test_coalesced_columns_read_as_the_class() -> None:
    row = {
        "endpoint": IMAGES,
        "model": "kling-v1",
        "mode": "",
        "duration": "",
        "sound": 0,
        "video_reference": 0,
        "reference_image": 1,
        "n": 2,
    }
    assert JobClass.from_row(row) == JobClass(
        IMAGES, "kling-v1", None, None, reference_image=True, n=2
    )


def test_columns_of_meta_stores_what_the_ledger_stored() -> None:
    # A digit string in an integer column is the number; a number in a text column its text.
    meta = {"endpoint": T2V, "model": "kling-v1", "duration": 5, "n": "2", "sound": 1}
    assert columns_of_meta(meta) == (T2V, "kling-v1", None, "5", 1, None, None, 2)
    assert columns_of_meta(None) == (None,) * 8


def test_label_and_pack() -> None:
    job = JobClass(T2V, "kling-v1-5", "pro", 10, sound=True)
    assert job.label == "videos/text2video kling-v1-5 pro 10s sound"
    assert job.pack == "video"
    image = JobClass(IMAGES, "kling-v1", None, None, reference_image=True, n=3)
    assert image.label == "images/generations kling-v1 ref-image n=3"
    assert image.pack == "image"


def test_to_dict_is_the_class_reports_show() -> None:
    job = JobClass(T2V, "kling-v1-5", "pro", 10, sound=True)
    assert job.to_dict() == {
        "endpoint": T2V,
        "model": "kling-v1-5",
        "mode": "pro",
        "duration": "10",
        "sound": True,
        "video_reference": False,
        "reference_image": False,
        "n": 1,
        "pack": "video",
    }
    image = JobClass(IMAGES, "kling-v1", None, None)
    assert image.to_dict()["mode"] is None and image.to_dict()["duration"] is None


def test_sort_key_orders_as_reports_list_classes() -> None:
    jobs = [
        JobClass(T2V, "kling-v1", "std", 5),
        JobClass(IMAGES, "kling-v1", None, None),
        JobClass(T2V, "kling-v1", "std", 10),
        JobClass(T2V, "kling-v1", None, 5),
    ]
    ordered = sorted(jobs, key=JobClass.sort_key)
    # The duration as text, as the columns hold it: "10" before "5".
    assert ordered == [jobs[1], jobs[3], jobs[2], jobs[0]]


# --- properties ---------------------------------------------------------------------------------

_classes = st.builds(
    JobClass,
    endpoint=st.sampled_from(ENDPOINTS),
    model=st.text(min_size=1, max_size=12),
    mode=st.none() | st.sampled_from(["std", "pro", "4k"]),
    duration=st.none() | st.integers(min_value=1, max_value=60),
    sound=st.booleans(),
    video_reference=st.booleans(),
    reference_image=st.booleans(),
    n=st.integers(min_value=1, max_value=9),
    voice=st.booleans(),
    resolution=st.none() | st.sampled_from(["1k", "2k", "4k"]),
    held_duration=st.booleans(),
)


@given(_classes)
@settings(max_examples=200)
def test_meta_and_columns_round_trip(job: JobClass) -> None:
    stored = _narrowed(job)
    assert JobClass.from_meta(job.to_meta()) == stored
    assert JobClass.from_row(job.to_columns()) == stored
    assert tuple(job.to_columns().values()) == columns_of_meta(job.to_meta())
    assert hash(job) == hash(dataclasses.replace(job))  # a cache key

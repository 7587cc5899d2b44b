"""Shared fixtures for the client and fake-server tests: one fake Kling server per test session.

Import the fixtures a test module needs (``from fake_fixtures import fake_server  # noqa: F401``);
the fixture itself is named ``fake``. Each test gets the server reset to its defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from klingcost.fake_server import FakeKling

KEY = "hk-test-SECRET-4f9c2a7d1e8b"
#: Server defaults restored before each test (tests may change them with fake.configure).
DEFAULTS: dict[str, Any] = {
    "api_key": KEY,
    "processing_after": 0.0,
    "done_after": 0.0,
    "drift": {},
}

BODIES: dict[str, dict[str, Any]] = {
    "images/generations": {"prompt": "a red fox", "n": 2, "aspect_ratio": "4:3"},
    "videos/text2video": {
        "model_name": "kling-v1-5",
        "prompt": "a ship in space",
        "mode": "pro",
        "duration": "10",
    },
    "videos/image2video": {"image": "https://example.com/first-frame.jpg", "duration": "5"},
    "videos/omni-video": {
        "model_name": "kling-video-o1",
        "prompt": "snow falling",
        "duration": 5,
        "mode": "std",
        "aspect_ratio": "16:9",
    },
}


@pytest.fixture(scope="session")
def _fake_session() -> Iterator[FakeKling]:
    with FakeKling(**DEFAULTS) as fake:
        yield fake


@pytest.fixture(name="fake")
def fake_server(_fake_session: FakeKling) -> FakeKling:
    _fake_session.reset()
    _fake_session.configure(**DEFAULTS)
    return _fake_session

"""klingcost.request is a package of small rooms; what it offered as one module it still offers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import klingcost.request

#: Every public name of klingcost/request.py before it became a package.
BEFORE = [
    "Endpoint", "ENDPOINTS", "DEFAULT_MODEL", "IMAGE_ASPECTS", "VIDEO_ASPECTS", "PROXY_LIMITS",
    "KLING_LIMITS", "MAX_IMAGE_BYTES", "MIN_IMAGE_SIDE", "CAMERA_AXES", "CAMERA_TYPES",
    "MAX_VOICES", "MAX_SHOTS", "MAX_SHOT_PROMPT", "MAX_ELEMENTS_I2V", "MAX_DYNAMIC_MASKS",
    "MULTI_IMAGES", "TRAJECTORY_POINTS", "normalize_endpoint", "Whole", "Count", "Unit", "Axis",
    "Flag", "OnOff", "WatermarkInfo", "ImageRequest", "CameraConfig", "CameraControl", "Voice",
    "Shot", "OmniElement", "Point", "DynamicMask", "TextToVideoRequest", "ImageToVideoRequest",
    "MultiImage", "MultiImageToVideoRequest", "OmniImage", "OmniVideo", "OmniVideoRequest",
    "RequestModel", "ValidatedRequest", "validate_request", "image_size",
]  # fmt: skip


def test_every_name_the_module_offered_is_still_importable_from_the_package() -> None:
    assert sorted(klingcost.request.__all__) == sorted(BEFORE)
    for name in BEFORE:
        assert getattr(klingcost.request, name) is not None, name


def test_each_room_reads_in_one_sitting() -> None:
    rooms = Path(klingcost.request.__file__).parent.glob("*.py")
    sizes = {path.name: len(path.read_text().splitlines()) for path in rooms}
    assert len(sizes) >= 8
    assert max(sizes.values()) <= 420, sizes


def test_importing_the_package_loads_no_io() -> None:
    code = (
        "import klingcost.request, sys\n"
        "print(' '.join(sorted(set(sys.modules) & {'httpx', 'sqlite3', 'click', 'yaml'})))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == []

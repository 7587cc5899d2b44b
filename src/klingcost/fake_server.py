"""The fake Kling API: kept importable here; it lives in :mod:`klingcost.testing`."""

from klingcost.testing import FAULTS, FakeKling, FakeKlingState, Fault, create_app, serve

__all__ = ["FAULTS", "FakeKling", "FakeKlingState", "Fault", "create_app", "serve"]

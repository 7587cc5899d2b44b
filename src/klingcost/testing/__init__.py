"""The fake Kling API, for tests and demos: an independent oracle that real clients can talk to.

One room per part: :mod:`.faults` (what a test can inject), :mod:`.auth` (Bearer keys and Kling's
JWT), :mod:`.prices` with ``prices.yaml`` (its own table of official unit prices), :mod:`.rules`
(what the API accepts, and the job it charges for), :mod:`.state` (tasks and what it saw),
:mod:`.app` (the routes), :mod:`.media` (the PNG and MP4 it serves as results), :mod:`.tls` (its
self-signed certificate) and :mod:`.runner` (``serve`` and :class:`FakeKling`).

It never calls klingcost's pricing or validation: a test that checks klingcost against it checks
klingcost against a second, separately written reading of Kling's price list.
"""

from klingcost.testing.app import create_app
from klingcost.testing.faults import FAULTS, Fault
from klingcost.testing.runner import FakeKling, serve
from klingcost.testing.state import FakeKlingState

__all__ = ["FAULTS", "FakeKling", "FakeKlingState", "Fault", "create_app", "serve"]

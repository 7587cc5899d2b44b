"""The Kling HTTP API: the protocol's answers and errors (:mod:`~klingcost.api.envelope`),
what is retried (:mod:`~klingcost.api.retry`), keeping secrets out of text
(:mod:`~klingcost.api.redact`), and the httpx clients over them (:mod:`~klingcost.api.base`,
:mod:`~klingcost.api.client`).

Users import the clients from the package root: ``from klingcost import KlingClient``. This
file imports nothing, so ``klingcost.api.redact`` (which the ledger and the fake API use) loads
without httpx.
"""

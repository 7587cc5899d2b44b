"""``klingcost proxy``: a Kling-compatible API that guards every client by its base URL.

:mod:`.app` (the routes), :mod:`.gate` (the guard on the wire: creates), :mod:`.traffic`
(queries, lists, callbacks and the background pass that settle holds), :mod:`.state` (what one
process holds), :mod:`.upstream` (the Kling API behind it), :mod:`.settings`, :mod:`.server`
(running it), :mod:`.envelope` (Kling's codes); the operator's layers are :mod:`.operate`,
:mod:`.accesslog`, :mod:`.metrics` and :mod:`.limits`.
"""

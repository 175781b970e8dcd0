"""What an answer says of the cache: ``X-ASGILook-Cache`` and ``Cache-Status``.

``X-ASGILook-Cache`` is the tutorial's (``Hit``, ``Miss``, ``Bypass``: see
:class:`~asgilook.caching.cache.RedisCache`), kept exactly as it was.
``Cache-Status`` (RFC 9211) says the same in the standard's words, beside it,
so that a proxy or CDN in front adds its own entry after this one: this
cache's name, ``asgilook``, then ``hit``, or ``fwd=`` and why the app made the
answer: ``miss`` (not cached yet), ``bypass`` (Redis could not be used) or
``method`` (a method that is never cached, such as ``POST``).
"""

from __future__ import annotations

import falcon.asgi

HEADER = 'X-ASGILook-Cache'
STATUS_HEADER = 'Cache-Status'
HIT = 'Hit'
MISS = 'Miss'
BYPASS = 'Bypass'
#: What ``Cache-Status`` says for each value of ``X-ASGILook-Cache``.
STATUSES = {
    HIT: 'asgilook; hit',
    MISS: 'asgilook; fwd=miss',
    BYPASS: 'asgilook; fwd=bypass',
}
#: ``Cache-Status`` of a ``Miss`` whose method is never answered from a cache.
BY_METHOD = 'asgilook; fwd=method'
#: The methods whose answers a cache may give again.
CACHED_METHODS = frozenset({'GET', 'HEAD'})


def say(resp: falcon.asgi.Response, result: str, method: str = 'GET') -> None:
    """Set both headers of ``resp`` to ``result`` (``HIT``, ``MISS`` or ``BYPASS``)."""
    resp.set_header(HEADER, result)
    if result == MISS and method not in CACHED_METHODS:
        resp.set_header(STATUS_HEADER, BY_METHOD)
    else:
        resp.set_header(STATUS_HEADER, STATUSES[result])

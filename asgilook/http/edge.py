"""What every answer says at the edge: ``nosniff``, CORS, methods and ``Allow``.

- Every answer, errors, ``304`` and the memory's replays included, says
  ``X-Content-Type-Options: nosniff``: a browser takes each for the type it
  says it is, never for a script or a page it might look like.
- CORS: pages of other sites may read the service (``GET``, ``HEAD``) and,
  after a preflight, ``POST`` and ``DELETE`` with ``Authorization`` and
  ``Content-Type``. The data is public and a deletion takes a bearer token,
  never a cookie, so no credentials are ever allowed. With
  ``ASGI_LOOK_CORS_ORIGINS=*`` (the default) every answer says
  ``Access-Control-Allow-Origin: *``, whoever asks: one answer for everyone,
  which any shared cache may keep. With a list of origins, an answer names
  the request's ``Origin`` if it is listed, none otherwise, and always says
  ``Vary: Origin``, so that no cache gives one origin's answer to another.
  :class:`Edge` makes these headers, once per origin; the app adds them to
  Falcon's answers, and :class:`~asgilook.caching.memory.ResponseMemory` to
  its replays, after each answer's own headers.
- Methods: the methods HTTP defines (RFC 9110, ``PATCH`` and ``QUERY``) get
  ``405`` on a route that lacks them; any other is implemented nowhere here,
  and gets ``501`` on any path (RFC 9110, section 15.6.2). ``OPTIONS`` is
  answered ``204`` on every route, with the same ``Allow`` as its ``405``
  (OPTIONS included), and a preflight's ``Access-Control-Allow-*`` besides:
  :class:`Router` puts that responder on every route.
- Errors say ``Cache-Control: no-store`` (:data:`ERROR_CACHE_CONTROL`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import falcon
import falcon.asgi
import falcon.constants
import falcon.inspect
import falcon.routing

from asgilook.settings import ANY_ORIGIN

Headers = list[tuple[bytes, bytes]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Responder = Callable[..., Awaitable[None]]

#: The methods HTTP defines (RFC 9110, RFC 5789's ``PATCH`` and the HTTP
#: working group's ``QUERY``): a route that does not take one answers ``405``.
#: Any other (WebDAV's, ``PURGE``, made-up ones) is ``501`` everywhere.
RECOGNISED = frozenset(
    falcon.constants.HTTP_METHODS + falcon.constants.HTTP_WG_DRAFT_METHODS
)
#: The headers of an answer that a page of another site may read, besides
#: those it always may (``Cache-Control``, ``Content-Length``,
#: ``Content-Type``, ``Last-Modified`` ...).
EXPOSED = (
    'Accept-Ranges',
    'Allow',
    'Cache-Status',
    'Content-Range',
    'ETag',
    'Link',
    'Location',
    'Retry-After',
    'WWW-Authenticate',
    'X-ASGILook-Cache',
    'X-Request-ID',
)
#: The request headers that a page of another site may send after a preflight.
ALLOWED_HEADERS = (
    'Accept',
    'Authorization',
    'Content-Type',
    'If-Modified-Since',
    'If-None-Match',
    'If-Range',
    'Last-Event-ID',
    'Range',
    'X-Request-ID',
)
#: The ``Cache-Control`` of every error: an error costs little to give again,
#: and one kept by a cache (a ``404``, for a shared cache's default 120 s)
#: could outlive what it says.
ERROR_CACHE_CONTROL = 'no-store'
#: Seconds a browser may keep a preflight's answer (Chromium keeps it at most
#: two hours, Firefox a day).
MAX_AGE = 86400

_NOSNIFF = (b'x-content-type-options', b'nosniff')
_EXPOSE = (b'access-control-expose-headers', ', '.join(EXPOSED).encode())
_VARY_ORIGIN = (b'vary', b'Origin')


class Edge:
    """The headers that every answer gets, by its request's ``Origin``.

    Also a Falcon middleware: a method that HTTP does not define is a
    ``501``, before it is routed.

    Args:
        origins: ``('*',)`` for any origin; else the origins that may read,
            as :func:`asgilook.settings.origins` spells them.
    """

    def __init__(self, origins: Iterable[str]) -> None:
        allowed = tuple(origins)
        self.any_origin = ANY_ORIGIN in allowed
        self._others: Headers = [_NOSNIFF]
        if self.any_origin:
            self._others += [(b'access-control-allow-origin', b'*'), _EXPOSE]
        self._by_origin = {
            origin: [
                _NOSNIFF,
                (b'access-control-allow-origin', origin.encode('latin-1')),
                _EXPOSE,
            ]
            for origin in ([] if self.any_origin else allowed)
        }

    def add(self, origin: str | None, headers: Headers) -> Headers:
        """An answer's ``headers``, and after them the edge's for a request
        from ``origin`` (None: it sent no ``Origin``).

        With a list of origins, ``Origin`` joins the answer's ``Vary`` (one
        field, as some caches read only the first).
        """
        if self.any_origin:
            return [*headers, *self._others]
        added = self._others if origin is None else self._by_origin.get(origin)
        answer = [*headers, *(self._others if added is None else added)]
        for index, (name, value) in enumerate(answer):
            if name == b'vary':
                answer[index] = (name, value + b', Origin')
                return answer
        answer.append(_VARY_ORIGIN)
        return answer

    def origin(self, headers: Headers) -> str | None:
        """The ``Origin`` of a request with these ASGI headers, if the answer
        depends on it."""
        if self.any_origin:
            return None
        for name, value in headers:
            if name == b'origin':
                return value.decode('latin-1')
        return None

    async def process_request(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        if req.method not in RECOGNISED:
            raise falcon.HTTPNotImplemented(
                title='Not Implemented',
                description=(
                    f'This service does not implement {req.method} for any URL. '
                    'Each URL lists its methods in the Allow of an OPTIONS '
                    'request; the routes are described at /openapi.json.'
                ),
            )


def adding(send: Send, edge: Edge, origin: str | None) -> Send:
    """``send``, with ``edge``'s headers for ``origin`` added to the answer's."""

    async def send_adding(message: dict[str, Any]) -> None:
        if message['type'] == 'http.response.start':
            message['headers'] = edge.add(origin, message['headers'])
        await send(message)

    return send_adding


class Router(falcon.routing.CompiledRouter):
    """Falcon's router, with one ``Allow`` on every route.

    Falcon's own ``OPTIONS`` leaves ``OPTIONS`` out of its ``Allow``, where its
    ``405`` lists it. Here every route gets :func:`options` instead, whose
    ``Allow`` is the ``405``'s: the route's methods and ``OPTIONS``, in
    Falcon's order.
    """

    def map_http_methods(self, resource: object, **kwargs: Any) -> Any:
        methods: Any = super().map_http_methods(resource, **kwargs)
        if 'OPTIONS' not in methods:
            allowed = sorted({*methods, 'OPTIONS'} - {'WEBSOCKET'})
            methods['OPTIONS'] = options(', '.join(allowed))
        return methods


# NOTE: falcon.inspect (the tests, `falcon-inspect-app`) reads this router as
#   it reads Falcon's own.
falcon.inspect.register_router(Router)(falcon.inspect.inspect_compiled_router)


def options(allowed: str) -> Responder:
    """The ``OPTIONS`` responder of a route whose methods are ``allowed``.

    ``204``, with ``Allow``; a CORS preflight (``Access-Control-Request-Method``)
    gets ``Access-Control-Allow-Methods`` (the same methods),
    ``-Allow-Headers`` and ``-Max-Age`` too. Whether the origin may have them
    is the edge's ``Access-Control-Allow-Origin``, as on every answer.
    """

    async def on_options(
        req: falcon.asgi.Request, resp: falcon.asgi.Response, **params: Any
    ) -> None:
        resp.status = falcon.HTTP_204
        resp.set_header('Allow', allowed)
        if req.get_header('Access-Control-Request-Method') is not None:
            resp.set_header('Access-Control-Allow-Methods', allowed)
            resp.set_header('Access-Control-Allow-Headers', ', '.join(ALLOWED_HEADERS))
            resp.set_header('Access-Control-Max-Age', str(MAX_AGE))

    return on_options

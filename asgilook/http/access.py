"""The access log: a record of every answer, and an id for every request.

:class:`~asgilook.http.app.App` hands every HTTP request to
:class:`AccessLog` first, which calls the app back around everything it does
for it: the ``414`` and ``431`` it refuses before Falcon, the memory's
replays, and Falcon's answers. So it sees every answer as it is sent, after
the edge's headers and the compression (``bytes`` are those sent). The one
exception is the hot path, a replay the app finds before anything else:
:meth:`AccessLog.replay` sends it and logs it the same way.

Every request has an id: the ``X-Request-ID`` that the client or a proxy in
front sent, when it is a sane one (1 to 128 letters, digits and ``-._:/+=@``),
else a new one, the 32 hex digits of a uuid4. Every answer says it in
``X-Request-ID``, and every record logged while the request is answered
carries it (see :mod:`asgilook.logs`).

Once the answer is over (sent whole, cut off, or failed), the logger
``asgilook.http.access`` writes one record of it at INFO: its message is a
line for people (``GET /images?limit=1 200 1234 B 3.1 ms Miss 127.0.0.1``),
and its fields, which :class:`asgilook.logs.JSONFormatter` writes as JSON, are
``method``, ``path`` (with the query string), ``route`` (the template that
answered it, ``(no route)`` if none did), ``status``, ``bytes``,
``duration`` (seconds), ``cache`` (what ``X-ASGILook-Cache`` said, or None),
``client`` (its address, as uvicorn gives it: a proxy's ``X-Forwarded-For``
with ``--proxy-headers``), ``request_id`` and ``upload_key`` (the name of the
upload key the request bore, or None; never the key).

Unless a logging configuration turns the logger on (``asgilook serve`` does;
plain ``uvicorn`` does not, without ``--log-config``), no record is made; the
id is sent all the same.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import falcon.asgi

from asgilook import logs
from asgilook.caching import status
from asgilook.caching.memory import Observe
from asgilook.caching.memory import Replay
from asgilook.caching.memory import listed
from asgilook.http.metrics import UNMATCHED

logger = logging.getLogger(__name__)

#: The request and response header of the request id.
HEADER = 'X-Request-ID'
#: The key of the request's access record in the ASGI scope: set while the
#: access log has the request in hand.
ANSWER = 'asgilook.access'
_HEADER = HEADER.lower().encode()
# NOTE: Sane: short, and nothing that a log line or a header could be bent
#   with (no space, quote, comma or control character).
_SANE = re.compile(rb'[0-9A-Za-z._:/+=@-]{1,128}')
# The version (4) and variant (RFC 9562) bits of a uuid4, and the others.
_UUID4 = (4 << 76) | (2 << 62)
_RANDOM = ((1 << 128) - 1) ^ (0xF << 76) ^ (3 << 62)

_Send = Callable[[dict[str, Any]], Awaitable[None]]
_ASGI = Callable[[dict[str, Any], Any, _Send], Awaitable[None]]


class _Answer:
    """What the log says of one request and its answer, as it goes."""

    __slots__ = (
        'request_id',
        'path',
        'client',
        'route',
        'status',
        'bytes',
        'cache',
        'sent',
        'upload_key',
    )

    def __init__(self, request_id: str, path: str, client: str | None) -> None:
        self.request_id = request_id
        self.path = path
        self.client = client
        self.route = UNMATCHED
        self.status: int | None = None
        self.bytes = 0
        self.cache: str | None = None
        #: When its last byte was sent (time.perf_counter()), if it was.
        self.sent: float | None = None
        #: The name of the upload key the request came with, if any.
        self.upload_key: str | None = None


class AccessLog:
    """The access log and the request ids; also a Falcon middleware.

    As a middleware, it learns the route template that Falcon answered
    with; :meth:`observing` tells it the routes of the memory's replays.
    """

    async def __call__(
        self, scope: dict[str, Any], receive: Any, send: _Send, app: _ASGI
    ) -> None:
        """Answer an HTTP request with ``app``, then log the answer."""
        started = time.perf_counter()
        answer = _Answer(_request_id(scope), _target(scope), _client(scope))
        scope[ANSWER] = answer
        token = logs.CURRENT.set(answer)
        try:
            await app(scope, receive, _sending(send, answer))
        except Exception:
            # NOTE: uvicorn answers 500 for an app that failed before it did.
            if answer.status is None:
                answer.status = 500
            raise
        finally:
            logs.CURRENT.reset(token)
            if logger.isEnabledFor(logging.INFO):
                # NOTE: Falcon runs the tasks it was given (a purge) after the
                #   answer: they are no part of its latency.
                _write(scope, answer, (answer.sent or time.perf_counter()) - started)

    async def replay(
        self, scope: dict[str, Any], send: _Send, found: Replay, started: float
    ) -> None:
        """Send an answer from memory with the request's id, then log it, as
        taking the time since ``started`` (``time.perf_counter()``).

        The hot path: what :meth:`__call__` does around the app, for an
        answer known before the app is called, with nothing kept for a log
        that is not written. Nothing else is logged while it is sent.
        """
        request_id = _request_id(scope)
        # NOTE: As _sending() counts them: the body's bytes once it is handed on.
        sent = 0
        try:
            await send(
                {
                    'type': 'http.response.start',
                    'status': found.code,
                    'headers': [*found.headers, (_HEADER, request_id.encode('ascii'))],
                }
            )
            sent = len(found.body)
            await send({'type': 'http.response.body', 'body': found.body})
        finally:
            if logger.isEnabledFor(logging.INFO):
                answer = _Answer(request_id, _target(scope), _client(scope))
                answer.route = found.route
                answer.status = found.code
                answer.bytes = sent
                answer.cache = status.HIT
                _write(scope, answer, time.perf_counter() - started)

    def observing(self, observe: Observe) -> Observe:
        """``observe``, which also tells the log the route and cache result of
        each answer."""

        def observe_route(
            route: str, method: str, status: int, seconds: float, cache: str
        ) -> None:
            _note(route, cache)
            observe(route, method, status, seconds, cache)

        return observe_route

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        # NOTE: The first middleware, so the last to see the answer: its
        #   cache header is final.
        _note(req.uri_template, resp.get_header(status.HEADER))


def _note(route: str | None, cache: str | None) -> None:
    """Tell the access record of the request in hand what answered it."""
    answer = logs.CURRENT.get()
    if isinstance(answer, _Answer):
        if route:
            answer.route = route
        answer.cache = cache


def note_key(name: str) -> None:
    """Tell the access record of the request in hand the upload key it bears."""
    answer = logs.CURRENT.get()
    if isinstance(answer, _Answer):
        answer.upload_key = name


def _target(scope: dict[str, Any]) -> str:
    """The request's path, and its query string if it has one."""
    query: bytes = scope['query_string']
    path: str = scope['path']
    return f'{path}?{query.decode("latin-1")}' if query else path


def _client(scope: dict[str, Any]) -> str | None:
    """The client's address, as the server gives it."""
    client = scope.get('client')
    if client is not None and not isinstance(client, tuple):
        # NOTE: Any iterable, says ASGI (falcon.testing sends an iterator):
        #   read once, and left as a tuple for Falcon.
        client = scope['client'] = tuple(client)
    return client[0] if client else None


def _request_id(scope: dict[str, Any]) -> str:
    """The request's ``X-Request-ID`` if it is sane, else a new id."""
    for name, value in listed(scope):
        if name == _HEADER:
            if _SANE.fullmatch(value):
                return str(value.decode('ascii'))
            break
    return new_id()


def new_id() -> str:
    """A new request id: a random uuid4, as 32 hex digits.

    NOTE: Drawn from the random module, not os.urandom as uuid.uuid4() does:
    an id is no secret, and a system call a request is a cost (uuid4() took
    four times as long). The random module is seeded again in a forked child.
    Its 16 bytes in hex, which takes half the time of formatting the number.
    """
    return (random.getrandbits(128) & _RANDOM | _UUID4).to_bytes(16).hex()


def _sending(send: _Send, answer: _Answer) -> _Send:
    """``send``, noting what is sent in ``answer`` and adding its id."""
    request_id = (_HEADER, answer.request_id.encode('ascii'))

    async def send_noting(message: dict[str, Any]) -> None:
        if message['type'] == 'http.response.start':
            # NOTE: A new list: the memory sends the same one every time.
            headers = [*message['headers'], request_id]
            message['headers'] = headers
            answer.status = message['status']
        else:
            answer.bytes += len(message.get('body', b''))
            if not message.get('more_body'):
                answer.sent = time.perf_counter()
        await send(message)

    return send_noting


def _write(scope: dict[str, Any], answer: _Answer, seconds: float) -> None:
    # NOTE: Made here rather than by logger.info(), which looks up the
    #   caller's file and line in the stack: nothing a reader of the access
    #   log needs, at a cost on every request.
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        0,
        '%s %s %s %d B %.1f ms %s %s',
        (
            scope['method'],
            answer.path,
            answer.status,
            answer.bytes,
            seconds * 1000,
            answer.cache or '-',
            answer.client or '-',
        ),
        None,
        extra={
            'method': scope['method'],
            'path': answer.path,
            'route': answer.route,
            'status': answer.status,
            'bytes': answer.bytes,
            'duration': round(seconds, 6),
            'cache': answer.cache,
            'client': answer.client,
            'request_id': answer.request_id,
            'upload_key': answer.upload_key,
        },
    )
    logger.handle(record)

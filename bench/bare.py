"""The ceiling of ``bench/serving.py``: an ASGI app that only hands out bytes.

Served as ``uvicorn bare:app`` with ``bench/`` on ``PYTHONPATH``. At startup
(the ASGI lifespan) it reads the manifest named by ``BENCH_BARE_MANIFEST``, a
JSON object that gives, by request path, the file of a body and the headers
to send with it (``[[name, value], ...]``, ``Content-Length`` among them),
and every body once. Then a GET of a listed path is answered with its bytes
and its headers, status 200, in one ``http.response.body``; any other path
is a 404, any other method a 405. The serving benchmark fills the manifest
with what asgilook answered to the same paths: the same bytes, the same
headers (uvicorn adds ``date`` and ``server`` to both). No framework, no
routing, no Redis: this is what the same uvicorn costs for the same answer,
so no app served the same way can be faster.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

MANIFEST_ENV = 'BENCH_BARE_MANIFEST'

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_NOT_FOUND: Headers = [(b'content-length', b'0')]
_NOT_ALLOWED: Headers = [(b'allow', b'GET'), (b'content-length', b'0')]


def load(manifest: pathlib.Path) -> dict[str, tuple[Headers, bytes]]:
    """The answers that ``manifest`` lists: headers and body, by path."""
    listed = json.loads(manifest.read_text())
    return {
        path: (
            [
                (name.encode('latin-1'), value.encode('latin-1'))
                for name, value in answer['headers']
            ],
            pathlib.Path(answer['body']).read_bytes(),
        )
        for path, answer in listed.items()
    }


class Ceiling:
    """Answer a GET of each listed path with the same headers and body, from memory."""

    def __init__(self) -> None:
        self._answers: dict[str, tuple[Headers, bytes]] = {}

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope['type'] == 'lifespan':
            await self._lifespan(receive, send)
        elif scope['type'] == 'http':
            await self._respond(scope, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                try:
                    self._answers = load(pathlib.Path(os.environ[MANIFEST_ENV]))
                except (KeyError, OSError, ValueError, TypeError) as ex:
                    # Tell uvicorn, which then exits instead of serving nothing.
                    failed = f'bare: cannot read {MANIFEST_ENV}: {ex!r}'
                    await send({'type': 'lifespan.startup.failed', 'message': failed})
                    return
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return

    async def _respond(self, scope: dict[str, Any], send: Send) -> None:
        answer = self._answers.get(scope['path'])
        if answer is None or scope['method'] != 'GET':
            status, headers = (
                (404, _NOT_FOUND) if answer is None else (405, _NOT_ALLOWED)
            )
            await send(
                {'type': 'http.response.start', 'status': status, 'headers': headers}
            )
            await send({'type': 'http.response.body', 'body': b''})
            return
        headers, body = answer
        await send({'type': 'http.response.start', 'status': 200, 'headers': headers})
        await send({'type': 'http.response.body', 'body': body})


app = Ceiling()

"""The ceiling of ``bench/serving.py``: an ASGI app that only hands out bytes.

Served as ``uvicorn bare:app`` with ``bench/`` on ``PYTHONPATH``. At startup
(the ASGI lifespan) it reads the file named by ``BENCH_BODY_PATH`` once; then
every GET, whatever its path, is answered with those bytes: status 200,
``image/jpeg`` and their length. No framework, no routing, no Redis: this is
what the same uvicorn costs for a response of that size, so no app served the
same way can be faster.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

BODY_ENV = 'BENCH_BODY_PATH'

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Ceiling:
    """Answer every GET with the same body, held in memory."""

    def __init__(self) -> None:
        self._body = b''
        self._headers: list[tuple[bytes, bytes]] = []

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
                    self._load(pathlib.Path(os.environ[BODY_ENV]))
                except (KeyError, OSError) as ex:
                    # Tell uvicorn, which then exits instead of serving nothing.
                    failed = f'bare: cannot read the body named by {BODY_ENV}: {ex!r}'
                    await send({'type': 'lifespan.startup.failed', 'message': failed})
                    return
                await send({'type': 'lifespan.startup.complete'})
            elif message['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return

    def _load(self, path: pathlib.Path) -> None:
        self._body = path.read_bytes()
        self._headers = [
            (b'content-type', b'image/jpeg'),
            (b'content-length', str(len(self._body)).encode()),
        ]

    async def _respond(self, scope: dict[str, Any], send: Send) -> None:
        if scope['method'] != 'GET':
            await send(
                {
                    'type': 'http.response.start',
                    'status': 405,
                    'headers': [(b'allow', b'GET'), (b'content-length', b'0')],
                }
            )
            await send({'type': 'http.response.body', 'body': b''})
            return
        await send(
            {'type': 'http.response.start', 'status': 200, 'headers': self._headers}
        )
        await send({'type': 'http.response.body', 'body': self._body})


app = Ceiling()

"""Reading an upload's bytes from a request: the HTTP side of ``POST /images``."""

from __future__ import annotations

import falcon.asgi


async def read_upload(req: falcon.asgi.Request, max_bytes: int) -> bytes:
    """Return the uploaded image's bytes from the request body."""
    data: bytes = await req.stream.read()
    return data

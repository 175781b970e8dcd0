"""The resource that serves the document, ``GET /openapi.json``."""

from __future__ import annotations

import json

import falcon.asgi

from asgilook.caching import conditional
from asgilook.config import Config
from asgilook.http.images import REVALIDATED
from asgilook.http.openapi.common import JSON
from asgilook.http.openapi.root import document


class OpenAPI:
    """``/openapi.json``: the document, made once, with an ``ETag``.

    Args:
        config: The app's config; the document states its limits.
    """

    def __init__(self, config: Config) -> None:
        self.document = document(config)
        self._data = json.dumps(self.document, indent=1).encode()
        self._etag = conditional.etag_of(self._data)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        resp.data = self._data
        resp.content_type = JSON
        resp.set_header('ETag', self._etag)
        resp.cache_control = list(REVALIDATED)

    on_head = on_get

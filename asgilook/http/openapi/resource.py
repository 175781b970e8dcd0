"""The resource that serves the document, ``GET /openapi.json``."""

from __future__ import annotations

import json

import falcon.asgi

from asgilook.caching import conditional
from asgilook.config import Config
from asgilook.http.images import REVALIDATED
from asgilook.http.openapi.common import JSON
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.root import document
from asgilook.http.openapi.root import mounted


class OpenAPI:
    """``/openapi.json``: the document, made once, with an ``ETag``.

    Under a path prefix (the request's root path), its ``servers`` name the
    prefix; it is made once for each.

    Args:
        config: The app's config; the document states its limits.
    """

    def __init__(self, config: Config) -> None:
        self.document = document(config)
        self._served = {'': self._serialized(self.document)}

    @staticmethod
    def _serialized(whole: Schema) -> tuple[bytes, str]:
        data = json.dumps(whole, indent=1).encode()
        return data, conditional.etag_of(data)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        root_path = req.root_path
        served = self._served.get(root_path)
        if served is None:
            served = self._serialized(mounted(self.document, root_path))
            # NOTE: The root path is the server's setting: one or two.
            self._served[root_path] = served
        resp.data, etag = served
        resp.content_type = JSON
        resp.set_header('ETag', etag)
        resp.cache_control = list(REVALIDATED)

    on_head = on_get

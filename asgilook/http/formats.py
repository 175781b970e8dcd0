"""JSON or MessagePack, by the request's ``Accept``.

Every answer that is data (image documents, listings, errors, health) is
JSON, unless the client prefers MessagePack (``Accept: application/msgpack``);
JSON wins a tie, and is the answer to a client that accepts neither. Such
answers say ``Vary: Accept``, and the cache keeps each format apart.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import falcon.media

JSON = falcon.MEDIA_JSON
MSGPACK = falcon.MEDIA_MSGPACK
FORMATS = (JSON, MSGPACK)


def preferred(req: falcon.asgi.Request) -> str:
    """The format the client prefers: JSON, unless it prefers MessagePack."""
    return req.client_prefers(FORMATS) or JSON


def handlers() -> dict[str, falcon.media.BaseHandler]:
    """The media handlers of every format, for the app's response options."""
    return {
        JSON: falcon.media.JSONHandler(),
        MSGPACK: falcon.media.MessagePackHandler(),
    }


def send(req: falcon.asgi.Request, resp: falcon.asgi.Response, media: Any) -> bytes:
    """Set ``media`` as the body in the client's format; return the bytes."""
    media_type = preferred(req)
    handler = resp.options.media_handlers[media_type]
    resp.data = handler.serialize(media, media_type)
    resp.content_type = media_type
    resp.vary = ['Accept']
    return resp.data


def variant(req: falcon.asgi.Request) -> str:
    """What a cache key adds for the client's format: nothing for JSON."""
    media_type = preferred(req)
    return '' if media_type == JSON else f' {media_type}'

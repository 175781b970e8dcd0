"""Errors that say what to do: near-miss URLs, methods allowed, one title each.

Falcon's own errors for a URL that matches no route, a method a route does
not have, or a query parameter that is wrong, say what happened in its own
words ("404 Not Found", "Invalid parameter"). These handlers give them the
service's titles and a description that points to what the client meant.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import falcon
import falcon.asgi

_UUID = r'[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}'
_IMAGE = re.compile(rf'/images/(?P<id>{_UUID})(?:\.(?P<ext>[^/]*))?/?')
_THUMBNAIL = re.compile(
    rf'/thumbnails/(?P<id>{_UUID})(?:/(?P<size>\d+x\d+)(?:\.(?P<ext>[^/]*))?)?/?'
)
_ROUTES = 'The routes are described at /openapi.json.'


def suggestion(path: str) -> str:
    """What a client that asked for ``path`` (which matches no route) meant."""
    found = _IMAGE.fullmatch(path)
    if found:
        image_id = uuid.UUID(found['id'])
        return f'Pictures are served as JPEG, at /images/{image_id}.jpeg.'
    found = _THUMBNAIL.fullmatch(path)
    if found:
        image_id = uuid.UUID(found['id'])
        if found['size']:
            return (
                'Thumbnails are served as JPEG, at '
                f'/thumbnails/{image_id}/{found["size"]}.jpeg.'
            )
        return (
            'A thumbnail has a size: /thumbnails/<id>/<width>x<height>.jpeg, one '
            'of those listed in the picture\'s "thumbnails" (GET /images).'
        )
    if len(path) > 1 and path.endswith('/'):
        return f'Without the trailing slash: {path.rstrip("/") or "/"}.'
    return f'There is nothing at {path}. {_ROUTES}'


async def route_not_found(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: Any
) -> None:
    raise falcon.HTTPNotFound(title='Not Found', description=suggestion(req.path))


async def method_not_allowed(
    req: falcon.asgi.Request,
    resp: falcon.asgi.Response,
    ex: falcon.HTTPMethodNotAllowed,
    params: Any,
) -> None:
    allowed = dict(ex.headers or {}).get('Allow', '')
    raise falcon.HTTPMethodNotAllowed(
        allowed.split(', ') if allowed else [],
        title='Method Not Allowed',
        description=f'{req.path} answers {allowed or "no method"}, not {req.method}.',
    )


async def invalid_parameter(
    req: falcon.asgi.Request,
    resp: falcon.asgi.Response,
    ex: falcon.HTTPError,
    params: Any,
) -> None:
    raise falcon.HTTPBadRequest(title='Invalid Parameter', description=ex.description)

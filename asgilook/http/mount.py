"""The app under a path prefix: ``/gallery/`` of a site, behind a proxy.

The prefix is the ASGI scope's ``root_path``: ``uvicorn --root-path
/gallery`` (and ``asgilook serve --root-path /gallery``) sets it. ASGI says
that ``path`` includes it, and uvicorn (0.55) puts it in front of the path it
was sent; Falcon (4.4) routes ``path`` as it is and puts ``root_path`` in
front of the URLs it makes (``req.relative_uri``, ``req.uri``), as WSGI's
``SCRIPT_NAME``. Between the two, every route was a 404. :func:`mount` makes
the scope the app's before anything reads it: ``path`` below the root path,
``root_path`` kept; so Falcon, the response memory and the Redis cache all
see the app's own paths, the same under every prefix.

A proxy may strip the prefix (nginx's ``proxy_pass http://asgilook/;``:
``/gallery/images`` reaches uvicorn as ``/images``, which uvicorn makes
``/gallery/images``) or pass it on (``proxy_pass http://asgilook;``: uvicorn
makes it ``/gallery/gallery/images``). Both work: the root path is taken off
once more when what is left still starts with it and is no route of the app.
A scope whose path does not start with its root path (falcon.testing's
``root_path=``, servers that follow WSGI) is the app's already.

The app names its own URLs by their path (``Location: /images/<id>.jpeg``,
``Link: </images?...>; rel="next"``), and the caches keep answers with those
headers. :func:`prefixing` puts the root path in front of them as they are
sent, to every client of every prefix, replays from memory included: one
Redis serves any number of prefixes without one's URLs reaching another's
clients. Image documents (the listing, the upload's answer, the events) name
their URLs with the root path (:func:`rooted`): the caches keep answers by
prefix, and the event stream keeps documents without one, each page getting
them under its own. The gallery page, its script and the OpenAPI document's
``servers`` say the root (see :mod:`asgilook.http.gallery`).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import Protocol

Send = Callable[[dict[str, Any]], Awaitable[None]]

# A ``Link`` target that is a path (not a URL with a host, nor ``//host``).
_LINK_PATH = re.compile(rb'<(?=/(?!/))')


def quoted(root_path: str) -> str:
    """The root path as a URL writes it: ``root_path``, like ``path``, is decoded."""
    return urllib.parse.quote(root_path)


class Router(Protocol):
    """What :func:`mount` asks of the app's router (Falcon's has it)."""

    def find(self, uri: str) -> object:
        """The route of ``uri``; None if it has none."""


def mount(scope: dict[str, Any], router: Router) -> str:
    """Make an HTTP scope's ``path`` the app's; return its root path ('' for none).

    The root path is left in ``scope['root_path']``, without a trailing slash.
    """
    root = scope.get('root_path') or ''
    if root.endswith('/'):
        root = scope['root_path'] = root.rstrip('/')
    if not root:
        return ''
    path = _below(scope['path'], root)
    if path is None:
        return root
    # NOTE: A proxy that passed the prefix on: uvicorn put it in front once
    #   more. Unless that is a path of the app (a prefix such as /images).
    again = _below(path, root)
    if again is not None and router.find(path) is None:
        path = again
    scope['path'] = path
    return root


def _below(path: str, root: str) -> str | None:
    """``path`` below ``root`` (``/`` for ``root`` itself); None if it is not
    below it."""
    if not path.startswith(root):
        return None
    rest = path[len(root) :]
    if rest and not rest.startswith('/'):
        return None
    # NOTE: uvicorn given a root path with a trailing slash makes //images.
    return '/' + rest.lstrip('/')


def prefixing(send: Send, root_path: str) -> Send:
    """``send``, with the root path in front of ``Location`` and ``Link`` paths."""
    prefix = quoted(root_path).encode('latin-1')

    async def send_prefixed(message: dict[str, Any]) -> None:
        if message['type'] == 'http.response.start':
            message = {
                **message,
                'headers': [
                    (name, _prefixed(name.lower(), value, prefix))
                    for name, value in message['headers']
                ],
            }
        await send(message)

    return send_prefixed


def _prefixed(name: bytes, value: bytes, prefix: bytes) -> bytes:
    if name == b'link':
        return _LINK_PATH.sub(b'<' + prefix, value)
    if name == b'location' and value.startswith(b'/') and not value.startswith(b'//'):
        return prefix + value
    return value


#: The fields of an image document that hold its URLs (paths of the app).
_URL_FIELDS = ('image', 'animation', 'page', 'original')


def rooted(document: dict[str, Any], root_path: str) -> dict[str, Any]:
    """An image document whose URLs carry the root path, if there is one.

    The document itself is left as it is: the events keep it below the root,
    for every subscriber to get it under its own.
    """
    if not root_path:
        return document
    prefix = quoted(root_path)
    found = {**document}
    for name in _URL_FIELDS:
        if found.get(name):
            found[name] = prefix + found[name]
    if 'thumbnails' in found:
        found['thumbnails'] = [prefix + uri for uri in found['thumbnails']]
    if found.get('srcset'):
        found['srcset'] = ', '.join(
            prefix + candidate for candidate in found['srcset'].split(', ')
        )
    return found

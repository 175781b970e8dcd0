"""The whole document: its version, info, servers and tags; paths; components."""

from __future__ import annotations

import importlib.metadata

from asgilook.config import Config
from asgilook.http.mount import quoted
from asgilook.http.openapi.common import CACHE
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import header_refs
from asgilook.http.openapi.parameters import parameters
from asgilook.http.openapi.paths import paths
from asgilook.http.openapi.responses import headers
from asgilook.http.openapi.responses import responses
from asgilook.http.openapi.schemas import schemas

#: The headers of every answer (see asgilook.http.edge).
EDGE_HEADERS = (
    'X-Content-Type-Options',
    'Access-Control-Allow-Origin',
    'Access-Control-Expose-Headers',
)


def document(config: Config) -> Schema:
    """The OpenAPI 3.1 document of an app made with ``config``."""
    whole = _document(config)
    _add_edge_headers(whole)
    return whole


def mounted(whole: Schema, root_path: str) -> Schema:
    """The document of the app served below ``root_path`` (a path prefix):
    its ``servers`` say so, and every path of the document is below it."""
    return {**whole, 'servers': servers(root_path)}


def servers(root_path: str = '') -> list[Schema]:
    """Where the paths are: below the root path, or ``/``."""
    return [{'url': quoted(root_path) or '/'}]


def _add_edge_headers(whole: Schema) -> None:
    """Every response gets the edge's headers; one that says ``CACHE``, its
    ``Cache-Status`` too."""
    responses = [
        response
        for item in whole['paths'].values()
        for method, operation in item.items()
        if not method.startswith('x-')
        for response in operation['responses'].values()
        if '$ref' not in response
    ]
    responses += whole['components']['responses'].values()
    for response in responses:
        headers = response.setdefault('headers', {})
        if CACHE in headers:
            headers.update(header_refs('Cache-Status'))
        headers.update(header_refs(*EDGE_HEADERS))


def _document(config: Config) -> Schema:
    return {
        'openapi': '3.1.0',
        'info': {
            'title': 'asgilook',
            'version': importlib.metadata.version('asgilook'),
            'description': (
                'A self-hosted image-sharing service: upload a picture, list '
                'it, fetch it and its thumbnails, delete it, watch changes '
                'live; keep pictures unlisted or private (signed links), '
                'and give uploaders keys. Every answer that is data (image '
                'documents, listings, errors, health) is JSON, or MessagePack '
                'for `Accept: '
                'application/msgpack`. Each path answers `OPTIONS` (and CORS '
                'preflights) with its methods; a method it does not list is a '
                '`405`, and one that HTTP does not define a `501` '
                '(`x-other-methods`).'
            ),
            'license': {'name': 'Apache-2.0', 'identifier': 'Apache-2.0'},
        },
        'servers': servers(),
        'tags': [
            {'name': 'images', 'description': 'Upload, list, fetch and delete.'},
            {'name': 'thumbnails', 'description': 'The fixed series of sizes.'},
            {
                'name': 'events',
                'description': 'Uploads and deletions of public pictures, live.',
            },
            {'name': 'gallery', 'description': 'The web page and its assets.'},
            {'name': 'operations', 'description': 'Health and metrics.'},
            {'name': 'meta', 'description': 'This document.'},
        ],
        'paths': paths(config),
        'components': components(config),
    }


def components(config: Config) -> Schema:
    return {
        'schemas': schemas(config),
        'parameters': parameters(),
        'headers': headers(),
        'responses': responses(),
        'securitySchemes': {
            'deleteToken': {
                'type': 'http',
                'scheme': 'bearer',
                'description': (
                    "The image's `delete_token`, or the admin token "
                    '(`ASGI_LOOK_ADMIN_TOKEN`).'
                ),
            },
            'uploadKey': {
                'type': 'http',
                'scheme': 'bearer',
                'description': (
                    'An upload key, made by `asgilook keys add NAME` and shown '
                    'once. Its pictures are its own: it lists them, whatever '
                    'their visibility, and deletes them; an admin key '
                    '(`--admin`) lists and deletes every picture. A key may '
                    'hold a quota (`413`) and a rate (`429`); a revoked or '
                    'unknown one is a `401`.'
                ),
            },
        },
    }

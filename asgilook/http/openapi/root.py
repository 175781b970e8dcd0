"""The whole document: its version, info, servers and tags; paths; components."""

from __future__ import annotations

import importlib.metadata

from asgilook.config import Config
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.parameters import parameters
from asgilook.http.openapi.paths import paths
from asgilook.http.openapi.responses import headers
from asgilook.http.openapi.responses import responses
from asgilook.http.openapi.schemas import schemas


def document(config: Config) -> Schema:
    """The OpenAPI 3.1 document of an app made with ``config``."""
    return {
        'openapi': '3.1.0',
        'info': {
            'title': 'asgilook',
            'version': importlib.metadata.version('asgilook'),
            'description': (
                'A self-hosted image-sharing service: upload a picture, list '
                'it, fetch it and its thumbnails, delete it, watch changes '
                'live. Every answer that is data (image documents, listings, '
                'errors, health) is JSON, or MessagePack for `Accept: '
                'application/msgpack`.'
            ),
            'license': {'name': 'Apache-2.0', 'identifier': 'Apache-2.0'},
        },
        'servers': [{'url': '/'}],
        'tags': [
            {'name': 'images', 'description': 'Upload, list, fetch and delete.'},
            {'name': 'thumbnails', 'description': 'The fixed series of sizes.'},
            {'name': 'events', 'description': 'Uploads and deletions, live.'},
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
            }
        },
    }

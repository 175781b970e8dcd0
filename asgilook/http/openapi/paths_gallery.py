"""The operations of the gallery page: the page, its assets, its live events."""

from __future__ import annotations

from asgilook.config import Config
from asgilook.http.openapi.common import CACHE
from asgilook.http.openapi.common import TEXT
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import data
from asgilook.http.openapi.common import header_refs
from asgilook.http.openapi.common import parameter_refs
from asgilook.http.openapi.common import schema_ref
from asgilook.http.openapi.responses import error_refs
from asgilook.http.openapi.responses import not_modified


def get_gallery() -> Schema:
    return {
        'summary': 'The gallery page',
        'description': 'A page for people: the pictures, uploads, live updates.',
        'tags': ['gallery'],
        'operationId': 'getGallery',
        'parameters': parameter_refs('IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The page.',
                'headers': header_refs(
                    'ETag',
                    'Cache-Control.no-cache',
                    CACHE,
                    'Content-Security-Policy',
                    'Referrer-Policy',
                ),
                'content': {'text/html': TEXT},
            },
            **not_modified(),
        },
    }


def get_picture() -> Schema:
    return {
        'summary': "A picture's page",
        'description': (
            'A page for people and link previews: the picture (an `<img '
            'srcset>` of its renditions), its size and date, its link and a '
            'download of the original; OpenGraph and Twitter tags whose URLs '
            "are absolute (`ASGI_LOOK_PUBLIC_URL`, else the request's scheme "
            "and Host); its name, if it has one. A private picture's page, "
            "only through a signed link (its document's `page`), its URLs "
            'signed too. Other parameters are ignored.'
        ),
        'tags': ['gallery'],
        'operationId': 'getPicture',
        'parameters': parameter_refs('ImageId', 'Expires', 'Signature', 'IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The page.',
                'headers': header_refs(
                    'ETag',
                    'Cache-Control.own',
                    CACHE,
                    'Content-Security-Policy',
                    'Referrer-Policy',
                    'Surrogate-Key',
                    'Cache-Tag',
                    'X-Robots-Tag',
                ),
                'content': {'text/html': TEXT},
            },
            **not_modified(),
            '404': {
                'description': (
                    'No such picture, or a private one without a good signed '
                    'link (`Not Found`): a small page for a client that '
                    'prefers `text/html` (a browser), else the error body.'
                ),
                'headers': header_refs('Vary', 'Cache-Control.no-store'),
                'content': {**data(schema_ref('Error')), 'text/html': TEXT},
            },
            **error_refs('503'),
        },
    }


def get_asset() -> Schema:
    return {
        'summary': 'An asset of the gallery page',
        'tags': ['gallery'],
        'operationId': 'getAsset',
        'parameters': parameter_refs('AssetName', 'AssetVersion', 'IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The stylesheet, the script or the icon.',
                'headers': header_refs('ETag', 'Cache-Control.asset', CACHE),
                'content': {
                    'text/css': TEXT,
                    'text/javascript': TEXT,
                    'image/svg+xml': TEXT,
                },
            },
            **not_modified(),
            **error_refs('404'),
        },
    }


def get_events(config: Config) -> Schema:
    return {
        'summary': 'Live events',
        'description': (
            'Server-Sent Events: `image-created` and `image-deleted` of public '
            'pictures (the others are never announced), with the image '
            'document as data, and a keep-alive comment every '
            f'{config.events_keepalive:g} s. The stream does not end by itself.'
        ),
        'tags': ['events'],
        'operationId': 'getEvents',
        'parameters': parameter_refs('LastEventId'),
        'responses': {
            '200': {
                'description': 'The stream.',
                'headers': header_refs('Cache-Control.no-store', CACHE),
                'content': {'text/event-stream': {'schema': schema_ref('Event')}},
            }
        },
    }

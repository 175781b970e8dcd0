"""The operations on pictures: list, upload, fetch, delete; and thumbnails."""

from __future__ import annotations

import falcon

from asgilook.config import Config
from asgilook.http.openapi.common import BINARY
from asgilook.http.openapi.common import CACHE
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import data
from asgilook.http.openapi.common import header_refs
from asgilook.http.openapi.common import parameter_refs
from asgilook.http.openapi.common import ref
from asgilook.http.openapi.common import schema_ref
from asgilook.http.openapi.responses import error_refs
from asgilook.http.openapi.responses import not_modified
from asgilook.http.uploads import FORM_OVERHEAD
from asgilook.http.uploads import IMAGE_FIELD
from asgilook.pictures.pixels import ACCEPTED_NAMES


def get_images() -> Schema:
    return {
        'summary': 'List the images',
        'description': (
            'A page of image documents, oldest upload first. Other parameters '
            'are ignored.'
        ),
        'tags': ['images'],
        'operationId': 'getImages',
        'parameters': parameter_refs('Limit', 'After', 'Order', 'IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'A page.',
                'headers': header_refs(
                    'ETag',
                    'Cache-Control.no-cache',
                    'Link',
                    'Vary',
                    CACHE,
                    'Surrogate-Key.listing',
                    'Cache-Tag.listing',
                ),
                'content': data(schema_ref('Listing')),
            },
            **not_modified(),
            **error_refs('400', '503'),
        },
    }


def upload_image(config: Config) -> Schema:
    return {
        'summary': 'Upload a picture',
        'description': (
            f'{ACCEPTED_NAMES}, at most '
            f'{config.max_upload_bytes:,} bytes and {config.max_pixels:,} pixels, '
            'stored as an upright sRGB JPEG with its thumbnail series.'
        ),
        'tags': ['images'],
        'operationId': 'uploadImage',
        'requestBody': {
            'required': True,
            'description': (
                'The picture itself, with any Content-Type but '
                '`multipart/form-data`; or a form with the picture in its '
                f'`{IMAGE_FIELD}` field (other fields are skipped; the form may '
                f'be {FORM_OVERHEAD:,} bytes longer than the picture).'
            ),
            'content': {
                'image/*': BINARY,
                'application/octet-stream': BINARY,
                falcon.MEDIA_MULTIPART: {
                    'schema': {
                        'type': 'object',
                        'required': [IMAGE_FIELD],
                        'properties': {IMAGE_FIELD: BINARY['schema']},
                    }
                },
            },
        },
        'responses': {
            '201': {
                'description': 'Stored.',
                'headers': header_refs('Location', 'Vary', CACHE),
                'content': data(schema_ref('Upload')),
            },
            **error_refs('400', '408', '413', '415', '503', '507'),
        },
    }


def get_image() -> Schema:
    return {
        'summary': 'Fetch a picture',
        'tags': ['images'],
        'operationId': 'getImage',
        'parameters': parameter_refs(
            'ImageId', 'Version', 'IfNoneMatch', 'IfModifiedSince', 'Range', 'IfRange'
        ),
        'responses': {
            '200': ref('responses', 'ImageFile'),
            '206': ref('responses', 'PartialFile'),
            **not_modified(),
            **error_refs('404', '416', '500', '503'),
        },
    }


def get_animation() -> Schema:
    return {
        'summary': 'Fetch the animation of an animated picture',
        'description': (
            'The animated WebP of an animated upload, with the same headers, '
            '`HEAD`, `304` and `?v=` as the picture; `404` for a still one.'
        ),
        'tags': ['images'],
        'operationId': 'getAnimation',
        'parameters': parameter_refs(
            'ImageId', 'Version', 'IfNoneMatch', 'IfModifiedSince', 'Range', 'IfRange'
        ),
        'responses': {
            '200': ref('responses', 'AnimationFile'),
            '206': ref('responses', 'PartialFile'),
            **not_modified(),
            **error_refs('404', '416', '500', '503'),
        },
    }


def delete_image() -> Schema:
    return {
        'summary': 'Delete a picture',
        'description': (
            'The picture, its thumbnails and its cached answers go; with '
            '`ASGI_LOOK_PURGE_URL`, a purge of its surrogate key is sent to the '
            'caches in front.'
        ),
        'tags': ['images'],
        'operationId': 'deleteImage',
        'parameters': parameter_refs('ImageId'),
        'security': [{'deleteToken': []}],
        'responses': {
            '204': {'description': 'Deleted.', 'headers': header_refs(CACHE)},
            **error_refs('401', '403', '404', '503', '507'),
        },
    }


def get_thumbnail() -> Schema:
    return {
        'summary': 'Fetch a thumbnail',
        'description': (
            "One size of the picture's thumbnail series (its document's "
            '`thumbnails`); any other size is a `404`. AVIF, WebP or JPEG, '
            'by `Accept` (or `format`).'
        ),
        'tags': ['thumbnails'],
        'operationId': 'getThumbnail',
        'parameters': parameter_refs(
            'ImageId',
            'Width',
            'Height',
            'Version',
            'Format',
            'IfNoneMatch',
            'IfModifiedSince',
            'Range',
            'IfRange',
        ),
        'responses': {
            '200': ref('responses', 'ThumbnailFile'),
            '206': ref('responses', 'PartialFile'),
            **not_modified(),
            **error_refs('400', '404', '416', '500', '503'),
        },
    }

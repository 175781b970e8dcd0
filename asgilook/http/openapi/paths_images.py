"""The operations on pictures: list, upload, fetch, delete; originals kept,
animations and thumbnails."""

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
from asgilook.http.sharing import VISIBILITY
from asgilook.http.uploads import FORM_OVERHEAD
from asgilook.http.uploads import IMAGE_FIELD
from asgilook.http.uploads import TEXT_FIELDS
from asgilook.pictures.pixels import ACCEPTED_NAMES
from asgilook.storage.index import VISIBILITIES

#: Whoever asks, or the holder of an upload key (see asgilook.http.sharing).
ANYONE_OR_KEY: list[Schema] = [{}, {'uploadKey': []}]
#: The parameters of a private picture's signed links.
SIGNED = ('Expires', 'Signature')


def get_images() -> Schema:
    return {
        'summary': 'List the images',
        'description': (
            'A page of image documents, oldest upload first: the public '
            'pictures. With an upload key, its own pictures instead, whatever '
            "their visibility (an admin key's: every picture), private ones "
            'with signed links; that listing is for its holder alone '
            '(`Cache-Control: private`). Other parameters are ignored.'
        ),
        'tags': ['images'],
        'operationId': 'getImages',
        'parameters': parameter_refs('Limit', 'After', 'Order', 'IfNoneMatch'),
        'security': ANYONE_OR_KEY,
        'responses': {
            '200': {
                'description': 'A page.',
                'headers': header_refs(
                    'ETag',
                    'Cache-Control.own',
                    'Link',
                    'Vary',
                    CACHE,
                    'Surrogate-Key.listing',
                    'Cache-Tag.listing',
                ),
                'content': data(schema_ref('Listing')),
            },
            **not_modified(),
            **error_refs('400', '401', '503'),
        },
    }


def upload_image(config: Config) -> Schema:
    keys = config.uploads == 'keys'
    key = (
        'An upload key is needed (`ASGI_LOOK_UPLOADS=keys`)'
        if keys
        else 'An upload key may be sent, and is then used'
    )
    return {
        'summary': 'Upload a picture',
        'description': (
            f'{ACCEPTED_NAMES}, at most '
            f'{config.max_upload_bytes:,} bytes and {config.max_pixels:,} pixels, '
            'stored as an upright sRGB JPEG with its thumbnail series. '
            f"{key}: the picture is the key's own, and counts against the "
            "key's quota (bytes its pictures may hold) and rate (uploads a "
            'minute), if it has them.'
        ),
        'tags': ['images'],
        'operationId': 'uploadImage',
        'parameters': parameter_refs('Visibility', 'Name'),
        # NOTE: Documented as the service runs: a key either may be or must be sent.
        'security': [{'uploadKey': []}] if keys else ANYONE_OR_KEY,
        'requestBody': _upload_body(),
        'responses': {
            '201': {
                'description': (
                    "Stored. A private picture's URIs are signed links, `Location` too."
                ),
                'headers': header_refs('Location', 'Vary', CACHE),
                'content': data(schema_ref('Upload')),
            },
            **error_refs('400', '401', '408', '413', '415', '429', '503', '507'),
        },
    }


def _upload_body() -> Schema:
    """The picture, alone or in a form with its name and visibility."""
    fields: Schema = {
        field: {'type': 'string', 'maxLength': most}
        for field, most in TEXT_FIELDS.items()
    }
    fields[VISIBILITY] = {'type': 'string', 'enum': list(VISIBILITIES)}
    return {
        'required': True,
        'description': (
            'The picture itself, with any Content-Type but '
            '`multipart/form-data`; or a form with the picture in its '
            f'`{IMAGE_FIELD}` field, and perhaps its name and visibility in '
            "fields of their own, which win over the query's (other fields "
            f'are skipped; the form may be {FORM_OVERHEAD:,} bytes longer '
            "than the picture). Without a name, the file name of the form's "
            'picture is kept.'
        ),
        'content': {
            'image/*': BINARY,
            'application/octet-stream': BINARY,
            falcon.MEDIA_MULTIPART: {
                'schema': {
                    'type': 'object',
                    'required': [IMAGE_FIELD],
                    'properties': {IMAGE_FIELD: BINARY['schema'], **fields},
                }
            },
        },
    }


def _file(schema: Schema, operation_id: str, response: str) -> Schema:
    """The operation of ``schema`` (its summary and description) on one file
    of a picture: the same parameters, ranges, 304 and errors for each."""
    return {
        **schema,
        'tags': ['images'],
        'operationId': operation_id,
        'parameters': parameter_refs(
            'ImageId',
            'Version',
            *SIGNED,
            'IfNoneMatch',
            'IfModifiedSince',
            'Range',
            'IfRange',
        ),
        'responses': {
            '200': ref('responses', response),
            '206': ref('responses', 'PartialFile'),
            **not_modified(),
            **error_refs('404', '416', '500', '503'),
        },
    }


def get_image() -> Schema:
    schema = {
        'summary': 'Fetch a picture',
        'description': (
            'The JPEG; a private picture only through a signed link (its '
            "document's `image`), else `404`."
        ),
    }
    return _file(schema, 'getImage', 'ImageFile')


def get_animation() -> Schema:
    schema = {
        'summary': 'Fetch the animation of an animated picture',
        'description': (
            'The animated WebP of an animated upload, with the same headers, '
            '`HEAD`, `304`, `?v=` and signed links as the picture; `404` for a '
            'still one.'
        ),
    }
    return _file(schema, 'getAnimation', 'AnimationFile')


def get_original() -> Schema:
    schema = {
        'summary': 'Download the original kept as uploaded',
        'description': (
            'The upload itself, for a picture whose JPEG is a conversion (its '
            "document's `original`): a PNG, GIF, WebP, HEIC or AVIF with its "
            'metadata removed and every pixel, frame and alpha value as '
            'uploaded; a BMP or TIFF as a lossless PNG. `Content-Disposition: '
            'attachment` names the file. The same headers, `HEAD`, `304`, '
            'ranges, `?v=` and signed links as the picture; `404` for a picture '
            'that has none (its JPEG is the original).'
        ),
    }
    return _file(schema, 'getOriginal', 'OriginalFile')


def delete_image() -> Schema:
    return {
        'summary': 'Delete a picture',
        'description': (
            'The picture, its thumbnails and its cached answers go; with '
            '`ASGI_LOOK_PURGE_URL`, a purge of its surrogate key is sent to the '
            'caches in front. Its delete token deletes it, or the upload key '
            'it came with, or an admin token or key.'
        ),
        'tags': ['images'],
        'operationId': 'deleteImage',
        'parameters': parameter_refs('ImageId'),
        'security': [{'deleteToken': []}, {'uploadKey': []}],
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
            "by `Accept` (or `format`). A private picture's, only through a "
            'signed link, as the picture.'
        ),
        'tags': ['thumbnails'],
        'operationId': 'getThumbnail',
        'parameters': parameter_refs(
            'ImageId',
            'Width',
            'Height',
            'Version',
            *SIGNED,
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

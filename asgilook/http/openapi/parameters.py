"""``components.parameters``: path, query and request header parameters."""

from __future__ import annotations

from asgilook.http.gallery import INDEX
from asgilook.http.gallery import STATIC
from asgilook.http.images import NAME
from asgilook.http.images import NAME_LENGTH
from asgilook.http.images import Images
from asgilook.http.openapi.common import Schema
from asgilook.http.sharing import EXPIRES
from asgilook.http.sharing import SIGNATURE
from asgilook.http.sharing import VISIBILITY
from asgilook.pictures import renditions
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import VISIBILITIES


def parameters() -> Schema:
    return {
        **_picture_parameters(),
        **_listing_parameters(),
        **_sharing_parameters(),
        **_asset_parameters(),
        **_header_parameters(),
        **_cors_parameters(),
    }


def _picture_parameters() -> Schema:
    """Which picture, thumbnail size, version and format."""
    return {
        'ImageId': {
            'name': 'image_id',
            'in': 'path',
            'required': True,
            'description': 'The id of the image, in any spelling a UUID has.',
            'schema': {'type': 'string', 'format': 'uuid'},
        },
        'Width': {
            'name': 'width',
            'in': 'path',
            'required': True,
            'schema': {'type': 'integer', 'minimum': 1},
        },
        'Height': {
            'name': 'height',
            'in': 'path',
            'required': True,
            'schema': {'type': 'integer', 'minimum': 1},
        },
        'Version': {
            'name': 'v',
            'in': 'query',
            'description': (
                "The image's `version`: that version, for good "
                '(`Cache-Control: immutable`), or `404` once it is not current.'
            ),
            'schema': {'type': 'string'},
        },
        'Format': {
            'name': 'format',
            'in': 'query',
            'description': (
                'The format of the thumbnail, for clients that cannot send '
                '`Accept`; without it, `Accept` chooses: AVIF if it takes '
                '`image/avif`, else WebP if it takes `image/webp`, else JPEG.'
            ),
            'schema': {'type': 'string', 'enum': list(renditions.FORMATS)},
        },
    }


def _listing_parameters() -> Schema:
    """The listing's page: its length, where it starts, its order."""
    return {
        'Limit': {
            'name': 'limit',
            'in': 'query',
            'description': 'How many images a page has at most.',
            'schema': {
                'type': 'integer',
                'minimum': 1,
                'maximum': Images.MAX_LIMIT,
                'default': Images.DEFAULT_LIMIT,
            },
        },
        'After': {
            'name': 'after',
            'in': 'query',
            'description': (
                'The id of the image that the page follows (with '
                '`order=newest`, the image it is older than). An id that names '
                'no image is a `400`.'
            ),
            'schema': {'type': 'string', 'format': 'uuid'},
        },
        'Order': {
            'name': 'order',
            'in': 'query',
            'description': 'Oldest upload first, or newest first.',
            'schema': {
                'type': 'string',
                'enum': [Images.OLDEST, Images.NEWEST],
                'default': Images.OLDEST,
            },
        },
    }


def _sharing_parameters() -> Schema:
    """An upload's name and visibility; a private picture's signed link."""
    return {
        'Visibility': {
            'name': VISIBILITY,
            'in': 'query',
            'description': (
                'Who may see the picture: `public` (listed to everyone), '
                '`unlisted` (served to whoever has its URLs, listed to its '
                'upload key alone) or `private` (served only through signed '
                "links, which expire; the upload's document holds them). A "
                "form's `visibility` field, if it has one, wins."
            ),
            'schema': {'type': 'string', 'enum': list(VISIBILITIES), 'default': PUBLIC},
        },
        'Name': {
            'name': NAME,
            'in': 'query',
            'description': (
                "The picture's name (a file name, a title): its last path part "
                f'is kept, without control characters, cut to {NAME_LENGTH} '
                "characters. A form's `name` field wins, and without either, "
                'the name of the file the form sent is kept.'
            ),
            'schema': {'type': 'string'},
        },
        # NOTE: Plain strings: a public picture is served whatever they say,
        #   and a private one is a 404 unless they make a good link.
        'Expires': {
            'name': EXPIRES,
            'in': 'query',
            'description': (
                "A private picture's signed link: when it expires, in seconds "
                'since the epoch. The links are in its document; a public or '
                'unlisted picture is served whatever this says.'
            ),
            'schema': {'type': 'string', 'examples': ['1767225600']},
        },
        'Signature': {
            'name': SIGNATURE,
            'in': 'query',
            'description': (
                "A private picture's signed link: the signature of its path "
                'and `expires`. Without a good one, unexpired, the private '
                'picture is a `404`, as if it did not exist.'
            ),
            'schema': {'type': 'string'},
        },
    }


def _asset_parameters() -> Schema:
    """An asset of the gallery page, by name and hash."""
    assets = sorted(
        path.name for path in STATIC.iterdir() if path.is_file() and path.name != INDEX
    )
    return {
        'AssetName': {
            'name': 'name',
            'in': 'path',
            'required': True,
            'description': 'The file name, as the page names it.',
            'schema': {'type': 'string', 'pattern': '^[^/]+$', 'examples': assets},
        },
        'AssetVersion': {
            'name': 'v',
            'in': 'query',
            'description': (
                "The hash of the asset's content, as the page names it: then "
                'the asset is kept for good.'
            ),
            'schema': {'type': 'string'},
        },
    }


def _header_parameters() -> Schema:
    """Validators, and the last event seen."""
    return {
        'IfNoneMatch': {
            'name': 'If-None-Match',
            'in': 'header',
            'description': 'ETags the client has, or `*`: `304` if one is current.',
            'schema': {'type': 'string', 'examples': ['*']},
        },
        'IfModifiedSince': {
            'name': 'If-Modified-Since',
            'in': 'header',
            'description': (
                'Without `If-None-Match`: `304` if not changed since this date.'
            ),
            'schema': {'type': 'string'},
        },
        'Range': {
            'name': 'Range',
            'in': 'header',
            'description': (
                'One byte range, `bytes=a-b`, `bytes=a-` or `bytes=-n`: a `206` '
                'of those bytes, or a `416` if it starts past the end. Several '
                'ranges, another unit or a malformed value get the whole `200`.'
            ),
            'schema': {'type': 'string', 'examples': ['bytes=0-1048575']},
        },
        'IfRange': {
            'name': 'If-Range',
            'in': 'header',
            'description': (
                'With `Range`: the `ETag` (or `Last-Modified`) of the version the '
                'client has part of; another version is sent whole, with `200`.'
            ),
            'schema': {'type': 'string'},
        },
        'LastEventId': {
            'name': 'Last-Event-ID',
            'in': 'header',
            'description': 'The last event seen: what followed it is sent first.',
            'schema': {'type': 'string'},
        },
    }


def _cors_parameters() -> Schema:
    """What a browser sends with a CORS preflight (``OPTIONS``)."""
    return {
        'Origin': {
            'name': 'Origin',
            'in': 'header',
            'description': (
                'The origin of the page that asks (`https://example.org`); one '
                'of `ASGI_LOOK_CORS_ORIGINS`, or any if that is `*`.'
            ),
            'schema': {'type': 'string'},
        },
        'AccessControlRequestMethod': {
            'name': 'Access-Control-Request-Method',
            'in': 'header',
            'description': (
                'The method the page means to use: present, this is a CORS '
                'preflight, answered with `Access-Control-Allow-*`.'
            ),
            'schema': {'type': 'string'},
        },
        'AccessControlRequestHeaders': {
            'name': 'Access-Control-Request-Headers',
            'in': 'header',
            'description': 'The headers the page means to send.',
            'schema': {'type': 'string'},
        },
    }

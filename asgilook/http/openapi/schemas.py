"""``components.schemas``: the image documents, the error, health and events."""

from __future__ import annotations

from asgilook.config import Config
from asgilook.http.events import CREATED
from asgilook.http.events import DELETED
from asgilook.http.events import UNAVAILABLE
from asgilook.http.images import NAME_LENGTH
from asgilook.http.images import Images
from asgilook.http.openapi.common import JSON
from asgilook.http.openapi.common import SIGNED_QUERY
from asgilook.http.openapi.common import UUID_PATTERN
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import schema_ref
from asgilook.storage.index import VISIBILITIES
from asgilook.storage.space import FLOOR

# An IMF-fixdate (RFC 9110, section 5.6.7), as Falcon writes every HTTP date.
_HTTP_DATE = (
    '^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} '
    '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} '
    '[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$'
)


def schemas(config: Config) -> Schema:
    return {
        'HttpDate': {
            'type': 'string',
            'description': 'An HTTP date (RFC 9110), in UTC.',
            'pattern': _HTTP_DATE,
            'examples': ['Tue, 24 Dec 2019 18:58:21 GMT'],
        },
        **_image_documents(config),
        'Error': {
            'type': 'object',
            'description': "Every error: Falcon's body, saying what was wrong.",
            'required': ['title', 'description'],
            'properties': {
                'title': {'type': 'string'},
                'description': {'type': 'string'},
            },
        },
        'Health': _health(),
        'Event': _event(),
    }


def _image_documents(config: Config) -> Schema:
    """``Image``, ``Upload`` (the image and its delete token) and ``Listing``."""
    image = _image_properties(config)
    upload: Schema = {
        **image,
        'delete_token': {
            'type': 'string',
            'description': (
                'The bearer token that deletes this picture: shown this once, '
                'as the service keeps only its hash.'
            ),
            'minLength': 1,
        },
    }
    return {
        # NOTE: Both documents are closed, so that a field the service
        #   sends and this document leaves out fails the tests. Closed
        #   schemas do not extend one another with allOf: the upload's
        #   properties are the image's, spelt out again.
        'Image': {
            'type': 'object',
            'description': 'The image document, as the listing and the events show it.',
            'required': list(image),
            'properties': image,
            'additionalProperties': False,
        },
        'Upload': {
            'type': 'object',
            'description': "The image document, and the upload's delete token.",
            'required': list(upload),
            'properties': upload,
            'additionalProperties': False,
        },
        'Listing': {
            'type': 'array',
            'description': 'One page of image documents.',
            'items': schema_ref('Image'),
            'maxItems': Images.MAX_LIMIT,
        },
    }


def _image_properties(config: Config) -> Schema:
    """The fields of the image document.

    NOTE: Every URI of a private picture's document is a signed link, which
    ends with ``?expires=...&signature=...`` (``srcset``'s after its ``?v=``).
    """
    return {
        'id': {'type': 'string', 'format': 'uuid'},
        'image': {
            'type': 'string',
            'description': 'The URI of the picture: `/images/{id}.jpeg`.',
            'pattern': f'^/images/{UUID_PATTERN}\\.jpeg{SIGNED_QUERY}$',
        },
        'modified': {'description': 'The time of upload.', **schema_ref('HttpDate')},
        'size': {
            'type': 'array',
            'description': '`[width, height]` in pixels, upright.',
            'prefixItems': [
                {'type': 'integer', 'minimum': 1},
                {'type': 'integer', 'minimum': 1},
            ],
            'minItems': 2,
            'items': False,
        },
        'thumbnails': {
            'type': 'array',
            'description': (
                'The URIs of the thumbnail series, largest first: half the '
                'size, a quarter, and so on, while both sides are at least '
                f'{config.min_thumb_size} pixels. Only these sizes exist.'
            ),
            'items': {
                'type': 'string',
                'pattern': (
                    f'^/thumbnails/{UUID_PATTERN}/[0-9]+x[0-9]+\\.jpeg{SIGNED_QUERY}$'
                ),
            },
        },
        'version': {
            'type': 'string',
            'description': 'Names this version of the picture, for `?v=` URLs.',
            'minLength': 1,
        },
        'srcset': {
            'type': 'string',
            'description': (
                'Every rendition under its `?v=` URL with its width, smallest '
                'first, for an `<img srcset>`; signed links for a private '
                'picture, as its other URIs are.'
            ),
        },
        **_shared_properties(),
    }


def _shared_properties() -> Schema:
    """The fields of the image document for pages and sharing: its
    placeholder, animation, original kept, page, name and visibility."""
    return {
        'placeholder': {
            'type': ['string', 'null'],
            'description': (
                'A tiny blurred stand-in for the picture, to show while it '
                'loads: a `data:image/webp;base64,...` URI of a few hundred '
                'bytes. Null for pictures stored before placeholders existed.'
            ),
            'pattern': '^data:image/webp;base64,[A-Za-z0-9+/=]+$',
        },
        'animation': {
            'type': ['string', 'null'],
            'description': (
                'For an animated upload (GIF, WebP, APNG), the URI of its '
                'animated WebP: `/images/{id}.webp`; else null.'
            ),
            'pattern': f'^/images/{UUID_PATTERN}\\.webp{SIGNED_QUERY}$',
        },
        'original': {
            'type': ['string', 'null'],
            'description': (
                'For an upload whose JPEG is a conversion (a PNG, GIF, WebP, '
                'HEIC, AVIF, BMP or TIFF), the URI of the original kept as '
                'uploaded, to download: `/images/{id}/original`; null when the '
                'JPEG is the original (a JPEG upload) or none could be kept.'
            ),
            'pattern': f'^/images/{UUID_PATTERN}/original{SIGNED_QUERY}$',
        },
        'page': {
            'type': 'string',
            'description': (
                "The URI of the picture's page, for people and link previews: "
                '`/pictures/{id}`.'
            ),
            'pattern': f'^/pictures/{UUID_PATTERN}{SIGNED_QUERY}$',
        },
        'name': {
            'type': ['string', 'null'],
            'description': (
                "The picture's name, as its uploader gave it (`name`), or the "
                'name of the file the form sent; its last path part, at most '
                f'{NAME_LENGTH} characters. Null when it has none.'
            ),
            'minLength': 1,
            'maxLength': NAME_LENGTH,
        },
        'visibility': {
            'type': 'string',
            'description': (
                'Who may see it. `public`: everyone, in every listing. '
                '`unlisted`: whoever has its URLs; listed to its upload key '
                'alone. `private`: only through signed links, which expire '
                '(`expires`, `signature`): the URLs of this document are such '
                'links, and without one the picture is a `404`.'
            ),
            'enum': list(VISIBILITIES),
        },
    }


def _health() -> Schema:
    check: Schema = {
        'type': 'object',
        'required': ['ok', 'detail'],
        'properties': {'ok': {'type': 'boolean'}, 'detail': {'type': 'string'}},
    }
    return {
        'type': 'object',
        'required': ['status', 'storage', 'space', 'index', 'redis'],
        'properties': {
            'status': {'type': 'string', 'enum': ['ok', 'degraded']},
            'storage': {
                'description': 'Can pictures be stored, and where are they kept?',
                **check,
                'required': ['ok', 'detail', 'location'],
                'properties': {
                    **check['properties'],
                    'location': {
                        'type': 'string',
                        'description': "A directory, or a bucket's s3:// URL.",
                    },
                },
            },
            'index': _index(),
            'redis': {'description': 'Does Redis answer?', **check},
            'space': _space(),
        },
    }


def _index() -> Schema:
    return {
        'type': 'object',
        'description': (
            'Which index lists the pictures, and how many it lists (`null` '
            'while it cannot be read: `ok` is false then).'
        ),
        'required': ['ok', 'kind', 'location', 'pictures'],
        'properties': {
            'ok': {'type': 'boolean'},
            'kind': {'type': 'string', 'enum': ['sqlite', 'postgresql']},
            'location': {
                'type': 'string',
                'description': (
                    "SQLite's file, or PostgreSQL's database as "
                    '`user@host:port/database` (never a password).'
                ),
            },
            'pictures': {'type': ['integer', 'null'], 'minimum': 0},
        },
    }


def _space() -> Schema:
    figure: Schema = {'type': ['integer', 'null'], 'minimum': 0}
    return {
        'type': 'object',
        'description': (
            'Is there room for the largest upload allowed? `ok` false makes '
            'the status `degraded` (uploads may fail with `507`); below '
            f'{FLOOR / 2**20:g} MiB free, `storage` is not `ok` either (`503`). '
            'The figures are of '
            'the tightest local volume that holds pictures; `null` for a '
            'bucket, which has no free space to ask for.'
        ),
        'required': ['ok', 'detail', 'free_bytes', 'total_bytes', 'needed_bytes'],
        'properties': {
            'ok': {'type': 'boolean'},
            'detail': {'type': 'string'},
            'free_bytes': figure,
            'total_bytes': figure,
            'needed_bytes': {
                'type': 'integer',
                'minimum': 0,
                'description': (
                    'What an upload of the largest size allowed may take on '
                    'disk: the original and its renditions.'
                ),
            },
        },
    }


def _event() -> Schema:
    return {
        'type': 'object',
        'description': (
            'One event of the stream, as its fields. `image-created` and '
            '`image-deleted` carry the image document and their id; '
            '`unavailable` (Redis cannot be used) an error, and then the '
            'stream ends.'
        ),
        'properties': {
            'event': {'type': 'string', 'enum': [CREATED, DELETED, UNAVAILABLE]},
            'data': {'type': 'string'},
            'id': {'type': 'string'},
            'retry': {'type': 'integer'},
        },
        'allOf': [
            _event_data([CREATED, DELETED], 'Image', 'id'),
            _event_data([UNAVAILABLE], 'Error'),
        ],
    }


def _event_data(kinds: list[str], schema: str, *required: str) -> Schema:
    """Events of ``kinds`` carry JSON of ``schema`` as their data."""
    return {
        'if': {'required': ['event'], 'properties': {'event': {'enum': kinds}}},
        'then': {
            'required': ['data', *required],
            'properties': {
                'data': {'contentMediaType': JSON, 'contentSchema': schema_ref(schema)}
            },
        },
    }

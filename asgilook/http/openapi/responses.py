"""``components.headers`` and ``components.responses``: files, ``304``, errors."""

from __future__ import annotations

import falcon

from asgilook.caching import status
from asgilook.http.edge import ALLOWED_HEADERS
from asgilook.http.edge import ERROR_CACHE_CONTROL
from asgilook.http.edge import EXPOSED
from asgilook.http.edge import MAX_AGE
from asgilook.http.gallery import POLICY
from asgilook.http.gallery import REFERRER_POLICY
from asgilook.http.gallery import Gallery
from asgilook.http.images import IMMUTABLE
from asgilook.http.images import REVALIDATED
from asgilook.http.images import SHORT_LIVED
from asgilook.http.limits import MAX_HEADERS
from asgilook.http.limits import MAX_QUERY
from asgilook.http.limits import MAX_TARGET
from asgilook.http.openapi.common import BINARY
from asgilook.http.openapi.common import CACHE
from asgilook.http.openapi.common import SIGNED_QUERY
from asgilook.http.openapi.common import UUID_PATTERN
from asgilook.http.openapi.common import Schema
from asgilook.http.openapi.common import data
from asgilook.http.openapi.common import header_refs
from asgilook.http.openapi.common import ref
from asgilook.http.openapi.common import schema_ref
from asgilook.http.purge import IMAGES_KEY
from asgilook.http.purge import LISTING_KEY
from asgilook.http.purge import MAX_KEYS_LENGTH
from asgilook.http.purge import image_key
from asgilook.http.uploads import IMAGE_FIELD
from asgilook.http.uploads import TEXT_FIELDS
from asgilook.pictures import kept
from asgilook.pictures import renditions

# The form's text fields, by name: `name` or `visibility`.
_TEXT_FIELDS = ' or '.join(f'`{name}`' for name in TEXT_FIELDS)

# Errors: each a response of its own, with the one error body.
ERRORS = {
    '400': (
        'BadRequest',
        'A bad parameter (a `limit` out of bounds, a thumbnail `format` that '
        'is none of the formats, a `visibility` that is none of the three), '
        'or an `after` that names no image (`Invalid Parameter`); or a bad '
        'upload: `Invalid Image` (empty, truncated or corrupt), `Invalid Form` '
        f'(no `{IMAGE_FIELD}` field, two, a malformed form, or a '
        f'{_TEXT_FIELDS} field that is not UTF-8 or too long), `Incomplete '
        'Upload` (the body ended before its Content-Length).',
    ),
    '401': (
        'Unauthorized',
        'No bearer token where one is needed (`Token Required`; an upload '
        'with `ASGI_LOOK_UPLOADS=keys`: `Upload Key Required`), or, for an '
        'upload or a listing, a bearer token that is no upload key in use '
        '(`Invalid Upload Key`).',
    ),
    '403': (
        'Forbidden',
        'The token may not delete this image: it is neither its delete token, '
        'nor the upload key it came with, nor an admin token or key '
        '(`Forbidden`).',
    ),
    '404': (
        'NotFound',
        'No such image, version (`?v=`), thumbnail size or asset (`Not Found`); '
        'or a private picture asked for without a good signed link (none, a '
        'wrong `signature`, or an `expires` past), as if it did not exist.',
    ),
    '405': (
        'MethodNotAllowed',
        'A method that HTTP defines but this URL does not take (`Method Not '
        "Allowed`); `Allow` lists the URL's methods, as its `OPTIONS` does.",
    ),
    '408': (
        'RequestTimeout',
        'The body did not arrive in time: whole within `ASGI_LOOK_UPLOAD_TIMEOUT` '
        'seconds and, after the first few, at `ASGI_LOOK_UPLOAD_MIN_RATE` bytes '
        'a second or more (`Upload Too Slow`). The connection is closed.',
    ),
    '413': (
        'ContentTooLarge',
        'The upload is over the byte limit (`Upload Too Large`), or the '
        'picture over the pixel limit (`Image Too Large`); or its upload key '
        'has too little of its quota left to keep it (`Quota Exceeded`: the '
        'description says how much is left).',
    ),
    '414': (
        'UriTooLong',
        f'The request target is over {MAX_TARGET:,} bytes, or its query string '
        f'over {MAX_QUERY:,} (`URI Too Long`).',
    ),
    '416': (
        'RangeNotSatisfiable',
        'The `Range` starts past the end of the file (`Range Not Satisfiable`); '
        '`Content-Range` says its length.',
    ),
    '415': (
        'UnsupportedMediaType',
        'The upload is not a picture in an accepted format (`Unsupported Image '
        'Format`).',
    ),
    '429': (
        'TooManyRequests',
        'Its upload key has made as many uploads this minute as its rate '
        'allows (`Too Many Uploads`); `Retry-After` says when to try again.',
    ),
    '431': (
        'RequestHeaderFieldsTooLarge',
        f'The request headers are over {MAX_HEADERS:,} bytes (`Headers Too Large`).',
    ),
    '500': (
        'StoredObjectDamaged',
        'A stored object failed its integrity check: damaged, swapped, or '
        'encrypted with a key this service does not have (`Stored Object '
        'Damaged`). The log names it; its bytes are never sent.',
    ),
    '503': (
        'ServiceUnavailable',
        'The storage cannot be read or written now (`Storage Unavailable`, '
        'with `Retry-After`); or, for an upload, the server holds as many '
        'bodies as it can and this one waited too long for room (`Too Many '
        'Uploads`, with `Retry-After`).',
    ),
    '501': (
        'NotImplemented',
        'A method that HTTP does not define (`PROPFIND`, `PURGE` ...), on any '
        'URL (`Not Implemented`). (uvicorn itself answers `400` to a method its '
        'parser does not know, before the app sees it.)',
    ),
    '507': ('StorageFull', 'The storage volume is full (`Storage Full`).'),
}


def error_refs(*statuses: str) -> Schema:
    """The error responses of ``statuses``, by reference."""
    return {status: ref('responses', ERRORS[status][0]) for status in statuses}


def not_modified() -> Schema:
    """The ``304`` of an operation that takes validators."""
    return {'304': ref('responses', 'NotModified')}


def headers() -> Schema:
    return {
        'ETag': {
            'description': (
                'A strong validator, for `If-None-Match`. A compressed answer '
                'has its own, which names its coding (`"<tag>-br"`, '
                '`"<tag>-gzip"`); `If-None-Match` takes either for the other.'
            ),
            'required': True,
            'schema': {'type': 'string', 'pattern': '^"[^"]+"$'},
        },
        'Last-Modified': {
            'description': 'The time of upload, for `If-Modified-Since`.',
            'required': True,
            'schema': schema_ref('HttpDate'),
        },
        **_cache_control_headers(),
        **_cache_headers(),
        'Vary': {
            'description': (
                'The format depends on `Accept`: JSON or MessagePack. A `200` '
                'of JSON or MessagePack depends on `Accept-Encoding` too: it is '
                'compressed (`br`, else `gzip`) for a client that takes it.'
            ),
            'required': True,
            'schema': {'type': 'string', 'pattern': 'Accept'},
        },
        'Link': {
            'description': 'The next page, when more images follow.',
            'schema': {'type': 'string', 'pattern': '^</images\\?[^>]+>; rel="next"$'},
        },
        'Location': {
            'description': (
                "The URI of the stored picture: its document's `image`, a "
                'signed link for a private one.'
            ),
            'required': True,
            'schema': {
                'type': 'string',
                'pattern': f'^/images/{UUID_PATTERN}\\.jpeg{SIGNED_QUERY}$',
            },
        },
        **_range_headers(),
        **_download_headers(),
        **_access_headers(),
        'Allow': {
            'description': (
                "The URL's methods, `OPTIONS` included: the same in its `405` "
                'and its `OPTIONS` answer.'
            ),
            'required': True,
            'schema': {'type': 'string', 'pattern': '^[A-Z]+(, [A-Z]+)*$'},
        },
        **_edge_headers(),
        **_page_headers(),
        **_key_headers(),
    }


def _range_headers() -> Schema:
    """The headers of byte ranges."""
    return {
        'Accept-Ranges': {
            'description': 'Byte ranges of this file may be asked for.',
            'required': True,
            'schema': {'type': 'string', 'enum': ['bytes']},
        },
        'Content-Range': {
            'description': 'The bytes sent and the whole length: `bytes a-b/n`.',
            'required': True,
            'schema': {'type': 'string', 'pattern': '^bytes [0-9]+-[0-9]+/[0-9]+$'},
        },
        'Content-Range.unsatisfiable': {
            'description': 'The length of the file: `bytes */n`.',
            'required': True,
            'schema': {'type': 'string', 'pattern': '^bytes \\*/[0-9]+$'},
        },
    }


def _download_headers() -> Schema:
    """``Content-Disposition``: the name a picture's file is saved under (see
    asgilook.http.downloads)."""
    names = '; filename="[^"]*"; filename\\*=UTF-8\'\'[A-Za-z0-9!#$&+.^_`|~%-]+$'
    saved = (
        "`filename*`: the picture's name (`name`, else `asgilook-<id>`) with "
        "the file's extension, in UTF-8; `filename`: an ASCII stand-in."
    )
    return {
        f'Content-Disposition.{disposition}': {
            'description': f'{what} {saved}',
            'required': True,
            'schema': {'type': 'string', 'pattern': f'^{disposition}{names}'},
        }
        for disposition, what in (
            ('inline', 'To be shown; if saved, under its name.'),
            ('attachment', 'To be saved as a file, under its name.'),
        )
    }


def _access_headers() -> Schema:
    """The headers of refusals and of pictures shared by link only."""
    return {
        'Retry-After': {
            'description': 'Seconds to wait before trying again.',
            'schema': {'type': 'integer', 'minimum': 0},
        },
        'WWW-Authenticate': {
            'description': 'The scheme to use: `Bearer`.',
            'required': True,
            'schema': {'type': 'string', 'pattern': '^Bearer'},
        },
        'X-Robots-Tag': {
            'description': (
                'The page of an unlisted or private picture is shared by '
                'link, not to be found: search engines are asked not to list '
                'it.'
            ),
            'schema': {'type': 'string', 'enum': ['noindex']},
        },
    }


def _key_headers() -> Schema:
    """The surrogate keys of an answer (see asgilook.http.purge)."""
    key = image_key(UUID_PATTERN)
    listed = f'{LISTING_KEY}( {key})*'
    return {
        'Surrogate-Key': {
            'description': (
                'The keys a cache in front may purge this answer by, separated '
                f'by spaces: `{image_key("<id>")} {IMAGES_KEY}`. A deletion or '
                'a replacement purges the first (with `ASGI_LOOK_PURGE_URL`).'
            ),
            'required': True,
            'schema': {'type': 'string', 'pattern': f'^{key} {IMAGES_KEY}$'},
        },
        'Cache-Tag': {
            'description': 'The same keys, separated by commas (Cloudflare).',
            'required': True,
            'schema': {'type': 'string', 'pattern': f'^{key},{IMAGES_KEY}$'},
        },
        # NOTE: Not required: an upload key's own listing is for its holder
        #   alone, kept by no cache in front, so it has no keys to purge.
        'Surrogate-Key.listing': {
            'description': (
                f'`{LISTING_KEY}` and the key of each picture the page shows, '
                f'separated by spaces; `{LISTING_KEY}` alone when they would '
                f'take over {MAX_KEYS_LENGTH:,} bytes. Not on the listing of '
                'an upload key.'
            ),
            'schema': {'type': 'string', 'pattern': f'^{listed}$'},
        },
        'Cache-Tag.listing': {
            'description': 'The same keys, separated by commas (Cloudflare).',
            'schema': {'type': 'string', 'pattern': f'^{listed.replace(" ", ",")}$'},
        },
    }


def _cache_headers() -> Schema:
    """What the cache did (see asgilook.caching.status)."""
    return {
        CACHE: {
            'description': (
                '`Miss`: the app made the answer; `Hit`: it came from the '
                'cache; `Bypass`: the app made it while Redis could not be used.'
            ),
            'required': True,
            'schema': {'type': 'string', 'enum': ['Miss', 'Hit', 'Bypass']},
        },
        'Cache-Status': {
            'description': (
                f'`{CACHE}` in the words of RFC 9211: `asgilook; hit`, or '
                '`asgilook; fwd=` and why the app made it: `miss`, `bypass` '
                '(Redis could not be used), `method` (never cached).'
            ),
            'required': True,
            'schema': {
                'type': 'string',
                'enum': [*status.STATUSES.values(), status.BY_METHOD],
            },
        },
    }


def _edge_headers() -> Schema:
    """The headers of every answer (see asgilook.http.edge), and of a preflight."""
    return {
        'X-Content-Type-Options': {
            'description': 'Every answer is of the type it says.',
            'required': True,
            'schema': {'type': 'string', 'enum': ['nosniff']},
        },
        'Access-Control-Allow-Origin': {
            'description': (
                'Which pages of other sites may read the answer: `*` with '
                '`ASGI_LOOK_CORS_ORIGINS=*` (the default); with a list of '
                "origins, the request's `Origin` when it is listed (none "
                'otherwise), and the answer says `Vary: Origin`.'
            ),
            'schema': {'type': 'string'},
        },
        'Access-Control-Expose-Headers': {
            'description': 'The headers those pages may read, with it.',
            'schema': {'type': 'string', 'enum': [', '.join(EXPOSED)]},
        },
        # Of a preflight only.
        'Access-Control-Allow-Methods': {
            'description': 'The methods a page may use: those of `Allow`.',
            'schema': {'type': 'string', 'pattern': '^[A-Z]+(, [A-Z]+)*$'},
        },
        'Access-Control-Allow-Headers': {
            'description': 'The request headers a page may send.',
            'schema': {'type': 'string', 'enum': [', '.join(ALLOWED_HEADERS)]},
        },
        'Access-Control-Max-Age': {
            'description': "Seconds a browser may keep this preflight's answer.",
            'schema': {'type': 'integer', 'enum': [MAX_AGE]},
        },
    }


def _page_headers() -> Schema:
    """What the gallery page may do (see asgilook.http.gallery)."""
    return {
        'Content-Security-Policy': {
            'description': (
                'Its own script, style and pictures, `data:` placeholders, '
                'requests to this service only, no frames around it.'
            ),
            'required': True,
            'schema': {'type': 'string', 'enum': [POLICY]},
        },
        'Referrer-Policy': {
            'description': 'Other sites learn its origin, never its path.',
            'required': True,
            'schema': {'type': 'string', 'enum': [REFERRER_POLICY]},
        },
    }


#: What is for one client alone (an upload key's listing, a private
#: picture's page) is kept by no shared cache: ``private`` says so.
_OWN = ('private', *REVALIDATED)
#: A private picture's file: kept by the browser that holds its link, for as
#: many seconds as the link has left (see asgilook.http.sharing).
_PRIVATE_FILE = '^private, max-age=[0-9]+$'


def _cache_control_headers() -> Schema:
    """``Cache-Control.{kind}``: the values that each kind of answer has."""
    return {
        'Cache-Control.no-cache': _cache_control(
            'Ask again every time: the `ETag` makes it a `304` while nothing changed.',
            REVALIDATED,
        ),
        'Cache-Control.own': _cache_control(
            'Ask again every time; `private` too (kept by the browser alone, '
            "by no cache in front) for an upload key's listing and a private "
            "picture's page.",
            REVALIDATED,
            _OWN,
        ),
        'Cache-Control.image': _cache_control(
            'A minute, so that a deleted picture is gone from caches within a '
            "minute; with `?v=`, for good. A private picture's: `private`, "
            'until its signed link expires.',
            SHORT_LIVED,
            IMMUTABLE,
            pattern=_PRIVATE_FILE,
        ),
        'Cache-Control.thumbnail': _cache_control(
            'As a picture; but ask again every time for a JPEG sent while '
            'the format asked for is being rendered.',
            SHORT_LIVED,
            IMMUTABLE,
            REVALIDATED,
            pattern=_PRIVATE_FILE,
        ),
        'Cache-Control.asset': _cache_control(
            "Ask again every time; with the `?v=` of the asset's hash, for good.",
            Gallery.REVALIDATED,
            Gallery.IMMUTABLE,
        ),
        'Cache-Control.no-store': _cache_control(
            'Not to be kept by any cache.', (ERROR_CACHE_CONTROL,)
        ),
    }


def _cache_control(
    description: str, *values: tuple[str, ...], pattern: str | None = None
) -> Schema:
    """A ``Cache-Control`` of one of ``values``, or else of ``pattern``."""
    schema: Schema = {'type': 'string', 'enum': [', '.join(value) for value in values]}
    if pattern is not None:
        enum = schema.pop('enum')
        schema['anyOf'] = [{'enum': enum}, {'pattern': pattern}]
    return {'description': description, 'required': True, 'schema': schema}


def responses() -> Schema:
    return {
        'NotModified': {
            'description': (
                "The client's copy is current (`If-None-Match`, "
                '`If-Modified-Since`): no body.'
            ),
            'headers': {
                **header_refs('ETag', CACHE),
                'Last-Modified': {
                    'description': 'As the `200` says it, if it does.',
                    'schema': schema_ref('HttpDate'),
                },
                'Cache-Control': {
                    'description': 'As the `200` says it.',
                    'required': True,
                    'schema': {'type': 'string'},
                },
                **{
                    name: {
                        'description': (
                            'As the `200` says it, when the app answers (a '
                            "`304` from the process's memory leaves it out)."
                        ),
                        'schema': {'type': 'string'},
                    }
                    for name in ('Surrogate-Key', 'Cache-Tag')
                },
            },
        },
        'Options': {
            'description': (
                "The URL's methods in `Allow`; for a CORS preflight "
                '(`Access-Control-Request-Method`), what a page may send too.'
            ),
            'headers': header_refs(
                'Allow',
                'Access-Control-Allow-Methods',
                'Access-Control-Allow-Headers',
                'Access-Control-Max-Age',
            ),
        },
        **_file_responses(),
        **{
            name: {
                'description': description,
                'headers': header_refs(
                    'Vary', 'Cache-Control.no-store', *_ERROR_HEADERS.get(code, ())
                ),
                'content': data(schema_ref('Error')),
            }
            for code, (name, description) in ERRORS.items()
        },
    }


# The headers that an error response has besides Vary and Cache-Control.
_ERROR_HEADERS = {
    '401': ('WWW-Authenticate',),
    '405': ('Allow',),
    '416': ('Content-Range.unsatisfiable',),
    '429': ('Retry-After',),
    '503': ('Retry-After',),
}


# The surrogate keys of a picture's files.
_KEYS = ('Surrogate-Key', 'Cache-Tag')
# The media types of the originals kept as uploaded.
_KEPT_TYPES = sorted(kept.MEDIA_TYPES.values())


def _picture_headers(*more: str) -> Schema:
    """The headers of a picture's file (not a thumbnail), and ``more``."""
    return header_refs(
        'ETag', 'Last-Modified', 'Cache-Control.image', 'Accept-Ranges', *more,
        CACHE, *_KEYS,
    )  # fmt: skip


def _file_responses() -> Schema:
    """The picture, its original kept as uploaded, its animation and its
    thumbnails."""
    return {
        'ImageFile': {
            'description': 'The JPEG.',
            'headers': _picture_headers('Content-Disposition.inline'),
            'content': {falcon.MEDIA_JPEG: BINARY},
        },
        'OriginalFile': {
            'description': (
                'The original kept as uploaded: a PNG, GIF, WebP, HEIC or AVIF, as its '
                "document's `original` says."
            ),
            'headers': _picture_headers('Content-Disposition.attachment'),
            'content': {media_type: BINARY for media_type in _KEPT_TYPES},
        },
        'AnimationFile': {
            'description': 'The animated WebP.',
            'headers': _picture_headers(),
            'content': {'image/webp': BINARY},
        },
        'ThumbnailFile': {
            'description': (
                'The thumbnail, in the format asked for; or, while that is '
                'still being rendered (once, after the first request for it), '
                'the JPEG, with `Cache-Control: no-cache`.'
            ),
            'headers': header_refs(
                'ETag',
                'Last-Modified',
                'Cache-Control.thumbnail',
                'Vary',
                'Accept-Ranges',
                CACHE,
                *_KEYS,
            ),
            'content': {
                renditions.MEDIA_TYPES[name]: BINARY for name in renditions.FORMATS
            },
        },
        'PartialFile': {
            'description': 'The bytes of the file that `Range` asked for.',
            'headers': header_refs(
                'ETag',
                'Last-Modified',
                'Content-Range',
                'Accept-Ranges',
                CACHE,
                *_KEYS,
            ),
            'content': {
                media_type: BINARY
                for media_type in sorted(
                    {*renditions.MEDIA_TYPES.values(), *_KEPT_TYPES}
                )
            },
        },
    }

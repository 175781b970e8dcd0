"""The OpenAPI 3.1 document of the service, ``GET /openapi.json``.

Every route, parameter, request body, response, header and error of the app
is described here, in one Python dict built when the app is made, from the
same constants the resources use. The tests keep it true: each route of the
app, with each of its methods, must be in it (and nothing else), and a
schemathesis run against a live server checks every answer against it.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import falcon
import falcon.asgi

from asgilook.caching import conditional
from asgilook.caching.cache import RedisCache
from asgilook.config import Config
from asgilook.http.events import CREATED
from asgilook.http.events import DELETED
from asgilook.http.events import UNAVAILABLE
from asgilook.http.gallery import INDEX
from asgilook.http.gallery import STATIC
from asgilook.http.gallery import Gallery
from asgilook.http.images import IMMUTABLE
from asgilook.http.images import REVALIDATED
from asgilook.http.images import SHORT_LIVED
from asgilook.http.images import Images
from asgilook.http.limits import MAX_HEADERS
from asgilook.http.limits import MAX_QUERY
from asgilook.http.limits import MAX_TARGET
from asgilook.http.metrics import CONTENT_TYPE
from asgilook.http.uploads import FORM_OVERHEAD
from asgilook.http.uploads import IMAGE_FIELD
from asgilook.pictures import renditions
from asgilook.pictures.pixels import ACCEPTED_NAMES

Schema = dict[str, Any]

JSON = falcon.MEDIA_JSON
MSGPACK = falcon.MEDIA_MSGPACK
#: What ``/metrics`` answers: Prometheus's text exposition format.
PROMETHEUS = CONTENT_TYPE

_UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
# An IMF-fixdate (RFC 9110, section 5.6.7), as Falcon writes every HTTP date.
_HTTP_DATE = (
    '^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} '
    '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} '
    '[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$'
)
_TEXT = {'schema': {'type': 'string'}}
_BINARY = {'schema': {'type': 'string', 'format': 'binary'}}

# Errors: each a response of its own, with the one error body.
_ERRORS = {
    '400': (
        'BadRequest',
        'A bad parameter, or an `after` that names no image (`Invalid '
        'Parameter`); or a bad upload: `Invalid Image` (empty, truncated or '
        f'corrupt), `Invalid Form` (no `{IMAGE_FIELD}` field, two, or a malformed '
        'form), `Incomplete Upload` (the body ended before its Content-Length).',
    ),
    '401': ('Unauthorized', 'No bearer token (`Token Required`).'),
    '403': ('Forbidden', 'The token may not delete this image (`Forbidden`).'),
    '404': (
        'NotFound',
        'No such image, version (`?v=`), thumbnail size or asset (`Not Found`).',
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
        'picture over the pixel limit (`Image Too Large`).',
    ),
    '414': (
        'UriTooLong',
        f'The request target is over {MAX_TARGET:,} bytes, or its query string '
        f'over {MAX_QUERY:,} (`URI Too Long`).',
    ),
    '415': (
        'UnsupportedMediaType',
        'The upload is not a picture in an accepted format (`Unsupported Image '
        'Format`).',
    ),
    '431': (
        'RequestHeaderFieldsTooLarge',
        f'The request headers are over {MAX_HEADERS:,} bytes (`Headers Too Large`).',
    ),
    '503': (
        'ServiceUnavailable',
        'The storage volume cannot be read or written now (`Storage '
        'Unavailable`); or, for an upload, the server holds as many bodies as '
        'it can and this one waited too long for room (`Too Many Uploads`, '
        'with `Retry-After`).',
    ),
    '507': ('StorageFull', 'The storage volume is full (`Storage Full`).'),
}


def _ref(kind: str, name: str) -> Schema:
    return {'$ref': f'#/components/{kind}/{name}'}


def _schema(name: str) -> Schema:
    return _ref('schemas', name)


def _parameters(*names: str) -> list[Schema]:
    return [_ref('parameters', name) for name in names]


def _headers(*names: str) -> Schema:
    """Response headers by component name: ``Cache-Control.image`` is a
    ``Cache-Control`` header with the values of an image."""
    return {name.partition('.')[0]: _ref('headers', name) for name in names}


def _errors(*statuses: str) -> Schema:
    return {status: _ref('responses', _ERRORS[status][0]) for status in statuses}


def _data(schema: Schema) -> Schema:
    """One schema as JSON and as MessagePack, whichever the client's Accept picks."""
    return {JSON: {'schema': schema}, MSGPACK: {'schema': schema}}


def _cache_control(description: str, *values: tuple[str, ...]) -> Schema:
    return {
        'description': description,
        'required': True,
        'schema': {'type': 'string', 'enum': [', '.join(value) for value in values]},
    }


def _get_and_head(get: Schema) -> Schema:
    """A GET, and a HEAD that answers the GET's headers without its body."""
    head = {
        **get,
        'summary': f'{get["summary"]}: the headers alone',
        'operationId': get['operationId'].replace('get', 'head', 1),
    }
    return {'get': get, 'head': head}


def _schemas(config: Config) -> Schema:
    image: Schema = {
        'id': {'type': 'string', 'format': 'uuid'},
        'image': {
            'type': 'string',
            'description': 'The URI of the picture: `/images/{id}.jpeg`.',
            'pattern': f'^/images/{_UUID}\\.jpeg$',
        },
        'modified': {'description': 'The time of upload.', **_schema('HttpDate')},
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
                'pattern': f'^/thumbnails/{_UUID}/[0-9]+x[0-9]+\\.jpeg$',
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
                'first, for an `<img srcset>`.'
            ),
        },
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
            'pattern': f'^/images/{_UUID}\\.webp$',
        },
    }
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
    check: Schema = {
        'type': 'object',
        'required': ['ok', 'detail'],
        'properties': {'ok': {'type': 'boolean'}, 'detail': {'type': 'string'}},
    }
    return {
        'HttpDate': {
            'type': 'string',
            'description': 'An HTTP date (RFC 9110), in UTC.',
            'pattern': _HTTP_DATE,
            'examples': ['Tue, 24 Dec 2019 18:58:21 GMT'],
        },
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
            'items': _schema('Image'),
            'maxItems': Images.MAX_LIMIT,
        },
        'Error': {
            'type': 'object',
            'description': "Every error: Falcon's body, saying what was wrong.",
            'required': ['title', 'description'],
            'properties': {
                'title': {'type': 'string'},
                'description': {'type': 'string'},
            },
        },
        'Health': {
            'type': 'object',
            'required': ['status', 'storage', 'redis'],
            'properties': {
                'status': {'type': 'string', 'enum': ['ok', 'degraded']},
                'storage': {'description': 'Can pictures be stored?', **check},
                'redis': {'description': 'Does Redis answer?', **check},
            },
        },
        'Event': {
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
        },
    }


def _event_data(kinds: list[str], schema: str, *required: str) -> Schema:
    """Events of ``kinds`` carry JSON of ``schema`` as their data."""
    return {
        'if': {'required': ['event'], 'properties': {'event': {'enum': kinds}}},
        'then': {
            'required': ['data', *required],
            'properties': {
                'data': {'contentMediaType': JSON, 'contentSchema': _schema(schema)}
            },
        },
    }


def _components(config: Config) -> Schema:
    assets = sorted(
        path.name for path in STATIC.iterdir() if path.is_file() and path.name != INDEX
    )
    parameters: Schema = {
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
        'LastEventId': {
            'name': 'Last-Event-ID',
            'in': 'header',
            'description': 'The last event seen: what followed it is sent first.',
            'schema': {'type': 'string'},
        },
    }
    headers: Schema = {
        'ETag': {
            'description': 'A strong validator, for `If-None-Match`.',
            'required': True,
            'schema': {'type': 'string', 'pattern': '^"[^"]+"$'},
        },
        'Last-Modified': {
            'description': 'The time of upload, for `If-Modified-Since`.',
            'required': True,
            'schema': _schema('HttpDate'),
        },
        'Cache-Control.no-cache': _cache_control(
            'Ask again every time: the `ETag` makes it a `304` while nothing changed.',
            REVALIDATED,
        ),
        'Cache-Control.image': _cache_control(
            'A minute, so that a deleted picture is gone from caches within a '
            'minute; with `?v=`, for good.',
            SHORT_LIVED,
            IMMUTABLE,
        ),
        'Cache-Control.thumbnail': _cache_control(
            'As a picture; but ask again every time for a JPEG sent while '
            'the format asked for is being rendered.',
            SHORT_LIVED,
            IMMUTABLE,
            REVALIDATED,
        ),
        'Cache-Control.asset': _cache_control(
            "Ask again every time; with the `?v=` of the asset's hash, for good.",
            Gallery.REVALIDATED,
            Gallery.IMMUTABLE,
        ),
        'Cache-Control.no-store': _cache_control(
            'Not to be kept by any cache.', ('no-store',)
        ),
        RedisCache.CACHE_HEADER: {
            'description': (
                '`Miss`: the app made the answer; `Hit`: it came from the '
                'cache; `Bypass`: the app made it while Redis could not be used.'
            ),
            'required': True,
            'schema': {'type': 'string', 'enum': ['Miss', 'Hit', 'Bypass']},
        },
        'Vary': {
            'description': 'The format depends on `Accept`: JSON or MessagePack.',
            'required': True,
            'schema': {'type': 'string', 'pattern': 'Accept'},
        },
        'Link': {
            'description': 'The next page, when more images follow.',
            'schema': {'type': 'string', 'pattern': '^</images\\?[^>]+>; rel="next"$'},
        },
        'Location': {
            'description': 'The URI of the stored picture.',
            'required': True,
            'schema': {'type': 'string', 'pattern': f'^/images/{_UUID}\\.jpeg$'},
        },
        'WWW-Authenticate': {
            'description': 'The scheme to use: `Bearer`.',
            'required': True,
            'schema': {'type': 'string', 'pattern': '^Bearer'},
        },
    }
    responses: Schema = {
        'NotModified': {
            'description': (
                "The client's copy is current (`If-None-Match`, "
                '`If-Modified-Since`): no body.'
            ),
            'headers': {
                **_headers('ETag', RedisCache.CACHE_HEADER),
                'Last-Modified': {
                    'description': 'As the `200` says it, if it does.',
                    'schema': _schema('HttpDate'),
                },
                'Cache-Control': {
                    'description': 'As the `200` says it.',
                    'required': True,
                    'schema': {'type': 'string'},
                },
            },
        },
        'ImageFile': {
            'description': 'The JPEG.',
            'headers': _headers(
                'ETag', 'Last-Modified', 'Cache-Control.image', RedisCache.CACHE_HEADER
            ),
            'content': {falcon.MEDIA_JPEG: _BINARY},
        },
        'AnimationFile': {
            'description': 'The animated WebP.',
            'headers': _headers(
                'ETag', 'Last-Modified', 'Cache-Control.image', RedisCache.CACHE_HEADER
            ),
            'content': {'image/webp': _BINARY},
        },
        'ThumbnailFile': {
            'description': (
                'The thumbnail, in the format asked for; or, while that is '
                'still being rendered (once, after the first request for it), '
                'the JPEG, with `Cache-Control: no-cache`.'
            ),
            'headers': _headers(
                'ETag',
                'Last-Modified',
                'Cache-Control.thumbnail',
                'Vary',
                RedisCache.CACHE_HEADER,
            ),
            'content': {
                renditions.MEDIA_TYPES[name]: _BINARY for name in renditions.FORMATS
            },
        },
        **{
            name: {
                'description': description,
                'headers': _headers('Vary', 'WWW-Authenticate')
                if status == '401'
                else _headers('Vary'),
                'content': _data(_schema('Error')),
            }
            for status, (name, description) in _ERRORS.items()
        },
    }
    return {
        'schemas': _schemas(config),
        'parameters': parameters,
        'headers': headers,
        'responses': responses,
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


def _paths(config: Config) -> Schema:
    not_modified = {'304': _ref('responses', 'NotModified')}
    cache = RedisCache.CACHE_HEADER

    gallery = {
        'summary': 'The gallery page',
        'description': 'A page for people: the pictures, uploads, live updates.',
        'tags': ['gallery'],
        'operationId': 'getGallery',
        'parameters': _parameters('IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The page.',
                'headers': _headers('ETag', 'Cache-Control.no-cache', cache),
                'content': {'text/html': _TEXT},
            },
            **not_modified,
        },
    }
    asset = {
        'summary': 'An asset of the gallery page',
        'tags': ['gallery'],
        'operationId': 'getAsset',
        'parameters': _parameters('AssetName', 'AssetVersion', 'IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The stylesheet, the script or the icon.',
                'headers': _headers('ETag', 'Cache-Control.asset', cache),
                'content': {
                    'text/css': _TEXT,
                    'text/javascript': _TEXT,
                    'image/svg+xml': _TEXT,
                },
            },
            **not_modified,
            **_errors('404'),
        },
    }
    events = {
        'summary': 'Live events',
        'description': (
            'Server-Sent Events: `image-created` and `image-deleted`, with the '
            'image document as data, and a keep-alive comment every '
            f'{config.events_keepalive:g} s. The stream does not end by itself.'
        ),
        'tags': ['events'],
        'operationId': 'getEvents',
        'parameters': _parameters('LastEventId'),
        'responses': {
            '200': {
                'description': 'The stream.',
                'headers': _headers('Cache-Control.no-store', cache),
                'content': {'text/event-stream': {'schema': _schema('Event')}},
            }
        },
    }
    listing = {
        'summary': 'List the images',
        'description': (
            'A page of image documents, oldest upload first. Other parameters '
            'are ignored.'
        ),
        'tags': ['images'],
        'operationId': 'getImages',
        'parameters': _parameters('Limit', 'After', 'Order', 'IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'A page.',
                'headers': _headers(
                    'ETag', 'Cache-Control.no-cache', 'Link', 'Vary', cache
                ),
                'content': _data(_schema('Listing')),
            },
            **not_modified,
            **_errors('400', '503'),
        },
    }
    upload = {
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
                'image/*': _BINARY,
                'application/octet-stream': _BINARY,
                falcon.MEDIA_MULTIPART: {
                    'schema': {
                        'type': 'object',
                        'required': [IMAGE_FIELD],
                        'properties': {IMAGE_FIELD: _BINARY['schema']},
                    }
                },
            },
        },
        'responses': {
            '201': {
                'description': 'Stored.',
                'headers': _headers('Location', 'Vary', cache),
                'content': _data(_schema('Upload')),
            },
            **_errors('400', '408', '413', '415', '503', '507'),
        },
    }
    image = {
        'summary': 'Fetch a picture',
        'tags': ['images'],
        'operationId': 'getImage',
        'parameters': _parameters(
            'ImageId', 'Version', 'IfNoneMatch', 'IfModifiedSince'
        ),
        'responses': {
            '200': _ref('responses', 'ImageFile'),
            **not_modified,
            **_errors('404', '503'),
        },
    }
    animation = {
        'summary': 'Fetch the animation of an animated picture',
        'description': (
            'The animated WebP of an animated upload, with the same headers, '
            '`HEAD`, `304` and `?v=` as the picture; `404` for a still one.'
        ),
        'tags': ['images'],
        'operationId': 'getAnimation',
        'parameters': _parameters(
            'ImageId', 'Version', 'IfNoneMatch', 'IfModifiedSince'
        ),
        'responses': {
            '200': _ref('responses', 'AnimationFile'),
            **not_modified,
            **_errors('404', '503'),
        },
    }
    delete = {
        'summary': 'Delete a picture',
        'description': 'The picture, its thumbnails and its cached answers go.',
        'tags': ['images'],
        'operationId': 'deleteImage',
        'parameters': _parameters('ImageId'),
        'security': [{'deleteToken': []}],
        'responses': {
            '204': {'description': 'Deleted.', 'headers': _headers(cache)},
            **_errors('401', '403', '404', '503', '507'),
        },
    }
    thumbnail = {
        'summary': 'Fetch a thumbnail',
        'description': (
            "One size of the picture's thumbnail series (its document's "
            '`thumbnails`); any other size is a `404`. AVIF, WebP or JPEG, '
            'by `Accept` (or `format`).'
        ),
        'tags': ['thumbnails'],
        'operationId': 'getThumbnail',
        'parameters': _parameters(
            'ImageId',
            'Width',
            'Height',
            'Version',
            'Format',
            'IfNoneMatch',
            'IfModifiedSince',
        ),
        'responses': {
            '200': _ref('responses', 'ThumbnailFile'),
            **not_modified,
            **_errors('404', '503'),
        },
    }
    health = {
        'summary': 'Health',
        'description': (
            'Whether this process can store pictures (a file written in the '
            'storage directory), and whether Redis answers. `200` while '
            'pictures can be stored, `"degraded"` without Redis (which only '
            'makes the service slower); `503` when they cannot.'
        ),
        'tags': ['operations'],
        'operationId': 'getHealth',
        'responses': {
            status: {
                'description': description,
                'headers': _headers('Cache-Control.no-store', 'Vary', cache),
                'content': _data(_schema('Health')),
            }
            for status, description in (
                ('200', 'Pictures can be stored.'),
                ('503', 'Pictures cannot be stored.'),
            )
        },
    }
    metrics = {
        'summary': 'Metrics',
        'description': "Prometheus's text format.",
        'tags': ['operations'],
        'operationId': 'getMetrics',
        'responses': {
            '200': {
                'description': 'The metrics of every worker.',
                'headers': _headers('Cache-Control.no-store', cache),
                'content': {PROMETHEUS: _TEXT},
            }
        },
    }
    openapi = {
        'summary': 'This document',
        'tags': ['meta'],
        'operationId': 'getOpenAPI',
        'parameters': _parameters('IfNoneMatch'),
        'responses': {
            '200': {
                'description': 'The OpenAPI document.',
                'headers': _headers('ETag', 'Cache-Control.no-cache', cache),
                'content': {
                    JSON: {
                        'schema': {
                            'type': 'object',
                            'required': ['openapi', 'info', 'paths'],
                        }
                    }
                },
            },
            **not_modified,
        },
    }
    paths = {
        '/': _get_and_head(gallery),
        '/static/{name}': _get_and_head(asset),
        '/events': {'get': events},
        '/images': {**_get_and_head(listing), 'post': upload},
        '/images/{image_id}.jpeg': {**_get_and_head(image), 'delete': delete},
        '/images/{image_id}.webp': _get_and_head(animation),
        '/thumbnails/{image_id}/{width}x{height}.jpeg': _get_and_head(thumbnail),
        '/healthz': _get_and_head(health),
        '/metrics': {'get': metrics},
        '/openapi.json': _get_and_head(openapi),
    }
    # NOTE: Any request may have too long a target or too many headers: the
    #   app answers those before it even routes them (see asgilook.http.app).
    for item in paths.values():
        for operation in item.values():
            operation['responses'] = {
                **operation['responses'],
                **_errors('414', '431'),
            }
    return paths


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
        'paths': _paths(config),
        'components': _components(config),
    }


class OpenAPI:
    """``/openapi.json``: the document, made once, with an ``ETag``.

    Args:
        config: The app's config; the document states its limits.
    """

    def __init__(self, config: Config) -> None:
        self.document = document(config)
        self._data = json.dumps(self.document, indent=1).encode()
        self._etag = conditional.etag_of(self._data)

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        resp.data = self._data
        resp.content_type = JSON
        resp.set_header('ETag', self._etag)
        resp.cache_control = list(REVALIDATED)

    on_head = on_get

"""What every part of the document uses: media types, patterns, ``$ref`` helpers."""

from __future__ import annotations

from typing import Any

import falcon

from asgilook.caching.cache import RedisCache
from asgilook.http.sharing import EXPIRES
from asgilook.http.sharing import SIGNATURE

Schema = dict[str, Any]

JSON = falcon.MEDIA_JSON
MSGPACK = falcon.MEDIA_MSGPACK
#: The header that says whether the answer came from the Redis cache.
CACHE = RedisCache.CACHE_HEADER

UUID_PATTERN = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
#: What a private picture's URLs end with: a signed link's query (see
#: asgilook.http.signing), which the others' URLs do without.
SIGNED_QUERY = f'(\\?{EXPIRES}=[0-9]+&{SIGNATURE}=[A-Za-z0-9_-]+)?'
TEXT = {'schema': {'type': 'string'}}
BINARY = {'schema': {'type': 'string', 'format': 'binary'}}


def ref(kind: str, name: str) -> Schema:
    return {'$ref': f'#/components/{kind}/{name}'}


def schema_ref(name: str) -> Schema:
    return ref('schemas', name)


def parameter_refs(*names: str) -> list[Schema]:
    return [ref('parameters', name) for name in names]


def header_refs(*names: str) -> Schema:
    """Response headers by component name: ``Cache-Control.image`` is a
    ``Cache-Control`` header with the values of an image."""
    return {name.partition('.')[0]: ref('headers', name) for name in names}


def data(schema: Schema) -> Schema:
    """One schema as JSON and as MessagePack, whichever the client's Accept picks."""
    return {JSON: {'schema': schema}, MSGPACK: {'schema': schema}}

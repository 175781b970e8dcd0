"""The S3 backend: objects in a bucket of AWS S3 or of any S3-compatible store.

Objects are keyed ``PREFIX/<key>`` in the bucket (SeaweedFS, MinIO, R2...).
The credentials, region and endpoint come from the standard variables:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``),
``AWS_REGION`` (``AWS_DEFAULT_REGION``; ``us-east-1`` if neither is set) and
``AWS_ENDPOINT_URL``: an endpoint is addressed path-style
(``ENDPOINT/BUCKET/KEY``), and an ``http://`` one is used as given. Without
credentials, obstore looks for them as the AWS SDKs do (web identity,
container or instance metadata).

An object is written with one PUT (never a multipart upload: nothing is left
half-uploaded) and read with one GET, ranged if asked; a big one is sent as
the GET's body streams in.

Every request is bounded (see :class:`S3Blobs`'s constants), so that a
request or a health check gets an answer instead of waiting for minutes: a
store that is down fails at once (connection refused, retried twice within
a few hundred milliseconds), one that is unreachable or hung within about
five seconds (a big upload to a hung store: within :attr:`S3Blobs.UPLOAD_TIMEOUT`).
The error is :class:`~asgilook.errors.StorageUnavailable` with a short
reason, never the store's own message, which could quote what it was sent.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING

import obstore
from obstore.store import S3Store

from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.storage.blobs import FULL
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import Reader
from asgilook.storage.blobs import key_parts
from asgilook.storage.blobs import prefix_parts
from asgilook.storage.blobs import unavailable

if TYPE_CHECKING:
    from obstore import BytesStream
    from obstore import GetOptions
    from obstore.store import ClientConfig
    from obstore.store import RetryConfig
    from obstore.store import S3Config

#: The error code in an S3 error document.
_CODE = re.compile(r'<Code>([A-Za-z0-9.]{1,64})</Code>')
#: The status of a response that obstore quotes.
_STATUS = re.compile(r'status code: (\d{3})')
#: Codes that say the bucket or the account is full, or the object too big.
_FULL_CODES = frozenset(
    {
        'EntityTooLarge',
        'QuotaExceeded',
        'XMinioStorageFull',
        'XMinioAdminBucketQuotaExceeded',
    }
)
_REASONS = {
    'SignatureDoesNotMatch': 'the secret key was refused',
    'InvalidAccessKeyId': 'the access key is unknown',
    'AccessDenied': 'access denied',
    'NoSuchBucket': 'there is no such bucket',
    '401': 'not authenticated',
    '403': 'access denied',
}
#: What a failure to talk to the endpoint looks like in obstore's message.
_CONNECTION = (
    (('ConnectionRefused', 'Connection refused'), 'connection refused'),
    (('dns error', 'failed to lookup address'), 'unknown host'),
    (('TimedOut', 'timed out', 'Timeout'), 'timed out'),
    (('error sending request', 'connection closed', 'Connect'), 'connection failed'),
)


def _code(ex: Exception) -> str | None:
    found = _CODE.search(str(ex))
    return found[1] if found else None


def _status(ex: Exception) -> str | None:
    found = _STATUS.search(str(ex))
    return found[1] if found else None


def s3_error(ex: Exception) -> StorageFull | StorageUnavailable:
    """What an error of obstore is to the store's callers.

    The reason given is one of a few fixed phrases, an S3 error code or an
    HTTP status: never text of the error, which quotes URLs and the store's
    answers.
    """
    code = _code(ex) or _status(ex)
    if code is not None:
        if code in _FULL_CODES or code == '507':
            return StorageFull(FULL)
        return unavailable(_REASONS.get(code, f'S3 error {code}'))
    text = str(ex)
    for needles, reason in _CONNECTION:
        if any(needle in text for needle in needles):
            return unavailable(reason)
    return unavailable(type(ex).__name__)


def _endpoint(environ: Mapping[str, str]) -> str | None:
    endpoint = environ.get('AWS_ENDPOINT_URL') or None
    if endpoint is not None:
        parts = urllib.parse.urlsplit(endpoint)
        # NOTE: obstore panics on an endpoint that is not a URL.
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise ValueError('AWS_ENDPOINT_URL is not an http:// or https:// URL.')
    return endpoint


def s3_config(environ: Mapping[str, str]) -> S3Config:
    """The S3 settings that the ``AWS_*`` variables of ``environ`` give."""
    region = environ.get('AWS_REGION') or environ.get('AWS_DEFAULT_REGION')
    config: S3Config = {'region': region or 'us-east-1'}
    for variable, name in (
        ('AWS_ACCESS_KEY_ID', 'access_key_id'),
        ('AWS_SECRET_ACCESS_KEY', 'secret_access_key'),
        ('AWS_SESSION_TOKEN', 'session_token'),
    ):
        if environ.get(variable):
            config[name] = environ[variable]  # type: ignore[literal-required]
    endpoint = _endpoint(environ)
    if endpoint is not None:
        config['endpoint'] = endpoint
        # NOTE: BUCKET.host names do not resolve for SeaweedFS, MinIO...
        config['virtual_hosted_style_request'] = False
    return config


class S3Reader(Reader):
    """The body of a GET, yielded as it streams in; dropped when closed."""

    def __init__(self, stream: BytesStream, length: int) -> None:
        self._stream: BytesStream | None = stream
        self.length = length

    async def __anext__(self) -> bytes:
        if self._stream is None:
            raise StopAsyncIteration
        try:
            return await anext(self._stream)
        except StopAsyncIteration:
            await self.close()
            raise
        except Exception as ex:
            await self.close()
            raise s3_error(ex) from ex

    async def close(self) -> None:
        # NOTE: Dropping the stream drops the response and its connection.
        self._stream = None


class S3Blobs(Blobs):
    """Objects in ``bucket``, under ``prefix``, of an S3-compatible store.

    Two HTTP clients: the one for every request but big uploads bounds
    each read from the connection (:attr:`READ_TIMEOUT`), so a hung store
    fails fast while a slow reader of a big object is never cut off; big
    uploads (over :attr:`SMALL`) are bounded as a whole instead
    (:attr:`UPLOAD_TIMEOUT`), as a read bound would cut them off while the
    bytes are still going out.
    """

    #: To connect to the endpoint.
    CONNECT_TIMEOUT = datetime.timedelta(seconds=2)
    #: For each read from a connection (the first: the answer to a request).
    READ_TIMEOUT = datetime.timedelta(seconds=5)
    #: For a whole request but a big upload: as long as a client may take
    #: to be sent a big object as it streams in.
    REQUEST_TIMEOUT = datetime.timedelta(hours=1)
    #: For a whole upload bigger than :attr:`SMALL`.
    UPLOAD_TIMEOUT = datetime.timedelta(minutes=2)
    #: Uploads up to this many bytes are bounded by :attr:`READ_TIMEOUT`.
    SMALL = 1024 * 1024
    #: Retries of a failed request (a 5xx, a lost connection; a timeout of a
    #: GET or HEAD), started within :attr:`RETRY_TIMEOUT` of the first try.
    MAX_RETRIES = 2
    RETRY_TIMEOUT = datetime.timedelta(seconds=3)
    INITIAL_BACKOFF = datetime.timedelta(milliseconds=100)
    MAX_BACKOFF = datetime.timedelta(seconds=1)
    #: The least a streamed GET yields at once (bar its last chunk).
    CHUNK = 1024 * 1024
    #: Objects listed per chunk of a listing (S3 answers 1000 per request).
    PAGE = 1000
    #: Keys per DeleteObjects request (S3 takes up to 1000).
    DELETE_BATCH = 1000

    def __init__(self, bucket: str, prefix: str, environ: Mapping[str, str]) -> None:
        if not bucket or '/' in bucket:
            raise ValueError(f'Not a bucket name: {bucket!r}.')
        prefix = prefix.strip('/')
        if prefix:
            key_parts(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f's3://{bucket}/{prefix}' if prefix else f's3://{bucket}'
        config = s3_config(environ)
        allow_http = config.get('endpoint', '').startswith('http://')
        self._store = self._client(
            config,
            {
                'allow_http': allow_http,
                'connect_timeout': self.CONNECT_TIMEOUT,
                'read_timeout': self.READ_TIMEOUT,
                'timeout': self.REQUEST_TIMEOUT,
            },
        )
        self._uploads = self._client(
            config,
            {
                'allow_http': allow_http,
                'connect_timeout': self.CONNECT_TIMEOUT,
                'timeout': self.UPLOAD_TIMEOUT,
            },
        )

    def _client(self, config: S3Config, options: ClientConfig) -> S3Store:
        retry: RetryConfig = {
            'max_retries': self.MAX_RETRIES,
            'retry_timeout': self.RETRY_TIMEOUT,
            'backoff': {
                'init_backoff': self.INITIAL_BACKOFF,
                'max_backoff': self.MAX_BACKOFF,
                'base': 2,
            },
        }
        return S3Store(
            self.bucket,
            prefix=self.prefix or None,
            config=config,
            client_options=options,
            retry_config=retry,
        )

    @staticmethod
    def _path(key: str) -> str:
        key_parts(key)
        return key

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        client = self._store if len(data) <= self.SMALL else self._uploads
        try:
            await obstore.put_async(client, path, data, use_multipart=False)
        except Exception as ex:
            raise s3_error(ex) from ex

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write the objects at once; raise the first error once all are done."""
        done = await asyncio.gather(
            *(self.put(key, data) for key, data in items), return_exceptions=True
        )
        for result in done:
            if isinstance(result, BaseException):
                raise result

    async def open(
        self, key: str, whole_up_to: int, start: int = 0, end: int | None = None
    ) -> Found | None:
        path = self._path(key)
        options: GetOptions = {}
        if end is not None:
            if end <= start:
                return await self._empty(key)
            options['range'] = (start, end)
        elif start:
            options['range'] = {'offset': start}
        try:
            result = await obstore.get_async(self._store, path, options=options)
        except FileNotFoundError as ex:
            return self._absent(ex)
        except Exception as ex:
            if _status(ex) == '416':
                # NOTE: The range starts at or past the end of the object.
                return await self._empty(key)
            raise s3_error(ex) from ex
        first, last = result.range
        reader = S3Reader(result.stream(min_chunk_size=self.CHUNK), last - first)
        if last - first > whole_up_to:
            return Found(result.meta['size'], reader)
        # NOTE: Collected by the reader too, so that its errors are the store's.
        return Found(result.meta['size'], b''.join([chunk async for chunk in reader]))

    async def _empty(self, key: str) -> Found | None:
        """No bytes of the object (a range at its end), or None if it is missing."""
        size = await self.size(key)
        return None if size is None else Found(size, b'')

    @staticmethod
    def _absent(ex: FileNotFoundError) -> None:
        """None, for a missing object; raise if the bucket is what is missing."""
        if _code(ex) == 'NoSuchBucket':
            raise s3_error(ex) from ex
        return None

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        try:
            meta = await obstore.head_async(self._store, path)
        except FileNotFoundError as ex:
            return self._absent(ex)
        except Exception as ex:
            raise s3_error(ex) from ex
        return meta['size']

    async def delete(self, keys: Iterable[str]) -> None:
        """Delete in batches; S3 takes a key with no object as deleted."""
        paths = [self._path(key) for key in keys]
        for first in range(0, len(paths), self.DELETE_BATCH):
            batch = paths[first : first + self.DELETE_BATCH]
            try:
                await obstore.delete_async(self._store, batch)
            except Exception as ex:
                raise s3_error(ex) from ex

    async def delete_prefix(self, prefix: str) -> None:
        """List the objects, and delete them a batch at a time as they come."""
        if not prefix_parts(prefix):
            raise ValueError('delete_prefix() needs a prefix: it never empties all.')
        batch: list[str] = []
        async for listed in self.list(prefix):
            batch.append(listed.key)
            if len(batch) == self.DELETE_BATCH:
                await self.delete(batch)
                batch = []
        await self.delete(batch)

    async def list(self, prefix: str = '') -> AsyncIterator[Listed]:
        path = '/'.join(prefix_parts(prefix)) or None
        stream = obstore.list(self._store, path, chunk_size=self.PAGE)
        while True:
            try:
                page = await anext(stream)
            except StopAsyncIteration:
                return
            except Exception as ex:
                raise s3_error(ex) from ex
            for meta in page:
                modified = meta['last_modified'].timestamp()
                yield Listed(meta['path'], meta['size'], modified)

    async def probe(self) -> str:
        """Write and delete ``.asgilook-probe/<host>-<pid>``."""
        key = f'.asgilook-probe/{socket.gethostname()}-{os.getpid()}'
        await self.put(key, b'ok')
        await self.delete([key])
        return f'bucket {self.url} writable'

"""Settings of the service, read from ``ASGI_LOOK_*`` environment variables.

What each variable is, its type, default and help are declared once, in
:data:`asgilook.settings.SETTINGS`; this module turns them into a
:class:`Config`.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio

from asgilook.settings import ANY_ORIGIN
from asgilook.settings import SETTINGS


class Config:
    """Every setting of the service as a plain attribute.

    Defaults live in ``DEFAULT_*`` class constants; ``Config()`` reads the
    process's environment once, :meth:`from_environ` any mapping given. Tests
    replace attributes after construction (a fake Redis factory, a
    predictable uuid generator, a temporary storage path) before handing the
    config to :func:`asgilook.app.create_app`.
    """

    DEFAULT_CONFIG_PATH = '/tmp/asgilook'
    DEFAULT_MIN_THUMB_SIZE = 64
    DEFAULT_REDIS_HOST = 'redis://localhost'
    DEFAULT_REDIS_FROM_URL = staticmethod(redis.asyncio.from_url)
    DEFAULT_UUID_GENERATOR = staticmethod(uuid.uuid4)
    DEFAULT_IMAGE_WORKERS = 2
    DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
    DEFAULT_MAX_PIXELS = 50_000_000
    DEFAULT_REDIS_TIMEOUT = 0.5
    # NOTE: No prefix: entries keep the tutorial's key names; deployments that
    #   share a Redis are kept apart by their scope (see asgilook.caching.keys).
    DEFAULT_REDIS_PREFIX = ''
    DEFAULT_CACHE_MAX_ENTRY = 1024 * 1024
    DEFAULT_MEMORY_CACHE = 64 * 1024 * 1024
    DEFAULT_EVENTS_KEEPALIVE = 15.0
    # NOTE: The data is public and deletions take bearer tokens, not
    #   cookies: any site's page may read it (see asgilook.http.edge).
    DEFAULT_CORS_ORIGINS: tuple[str, ...] = (ANY_ORIGIN,)
    # NOTE: Seconds for a whole request body, and the least average rate
    #   (bytes a second) it must arrive at after a few seconds' grace; a
    #   phone on a poor 3G link sends 10 KiB a second or more.
    DEFAULT_UPLOAD_TIMEOUT = 120.0
    DEFAULT_UPLOAD_MIN_RATE = 4 * 1024
    # NOTE: No admin token by default: then only an image's own delete token
    #   can delete it. No database URL: the index is then a SQLite file in the
    #   storage directory (see asgilook.storage.index).
    DEFAULT_ADMIN_TOKEN: str | None = None
    DEFAULT_DATABASE_URL: str | None = None
    DEFAULT_IGNORE_SQLITE_INDEX = False
    # NOTE: No storage URL: pictures are kept in the storage directory, in the
    #   tutorial's layout; renditions are kept with the originals. Encryption
    #   at rest is off until a key is given.
    DEFAULT_STORAGE_URL: str | None = None
    DEFAULT_RENDITIONS_URL: str | None = None
    DEFAULT_ENCRYPTION_KEY: str | None = None
    DEFAULT_ENCRYPTION_OLD_KEYS: tuple[str, ...] = ()
    # NOTE: No purge by default: shared caches forget a picture when its
    #   lifetime ends (see asgilook.http.purge).
    DEFAULT_PURGE_URL: str | None = None
    # NOTE: No public URL: a picture's page names its absolute URLs after the
    #   request's scheme and Host (see asgilook.http.pages).
    DEFAULT_PUBLIC_URL: str | None = None
    DEFAULT_PURGE_METHOD = 'PURGE'
    # NOTE: Open uploads, as the tutorial has them; keys are asked for only
    #   when the operator says so (see asgilook.http.sharing).
    DEFAULT_UPLOADS = 'open'
    DEFAULT_SIGNED_URL_TTL = 3600
    DEFAULT_URL_SECRETS: tuple[str, ...] = ()
    #: The standard variables of S3 clients, which an s3:// storage URL uses.
    AWS_VARIABLES = (
        'AWS_ACCESS_KEY_ID',
        'AWS_SECRET_ACCESS_KEY',
        'AWS_SESSION_TOKEN',
        'AWS_REGION',
        'AWS_DEFAULT_REGION',
        'AWS_ENDPOINT_URL',
    )

    storage_path: pathlib.Path
    redis_host: str
    redis_timeout: float
    #: Put in front of every Redis key.
    redis_prefix: str
    database_url: str | None
    #: Start on a database even beside a SQLite index that lists pictures.
    ignore_sqlite_index: bool
    admin_token: str | None
    image_workers: int
    max_upload_bytes: int
    max_pixels: int
    upload_timeout: float
    upload_min_rate: int
    cache_max_entry: int
    memory_cache: int
    events_keepalive: float
    #: ``('*',)`` for any origin, else the origins that may read.
    cors_origins: tuple[str, ...]
    storage_url: str | None
    renditions_url: str | None
    encryption_key: str | None
    encryption_old_keys: tuple[str, ...]
    #: Where a purge of a deleted or replaced picture's keys goes, if anywhere.
    purge_url: str | None
    purge_method: str
    #: The scheme and host of the service's absolute URLs, if fixed.
    public_url: str | None
    #: ``open`` (anyone uploads) or ``keys`` (only with an upload key).
    uploads: str
    #: Seconds a private picture's signed links stay good.
    signed_url_ttl: int
    #: The secrets that sign links, the signing one first; empty: the index's.
    url_secrets: tuple[str, ...]
    #: The AWS_* variables of the environment the config was read from.
    aws: dict[str, str]

    def __init__(self) -> None:
        self._read(os.environ)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Config:
        """The settings that the environment ``environ`` gives.

        Raises:
            ValueError: a variable holds what its setting cannot be.
        """
        config = cls.__new__(cls)
        config._read(environ)
        return config

    def _read(self, environ: Mapping[str, str]) -> None:
        for setting in SETTINGS:
            if setting.attribute is None or setting.default is None:
                continue
            raw = environ.get(setting.variable)
            value: Any = getattr(self, setting.default)
            if raw is not None:
                try:
                    value = setting.parse(raw)
                except ValueError as ex:
                    raise ValueError(
                        f'{setting.variable} must be {ex}, not {raw!r}'
                    ) from None
            setattr(self, setting.attribute, value)
        self.aws = {
            name: environ[name] for name in self.AWS_VARIABLES if name in environ
        }
        self.storage_path = pathlib.Path(self.storage_path)
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.min_thumb_size = self.DEFAULT_MIN_THUMB_SIZE
        self.redis_from_url = self.DEFAULT_REDIS_FROM_URL
        self.uuid_generator = self.DEFAULT_UUID_GENERATOR

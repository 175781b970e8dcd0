"""Settings of the service, read from ``ASGI_LOOK_*`` environment variables."""

import os
import pathlib
import uuid
from collections.abc import Callable
from typing import TypeVar

import redis.asyncio

N = TypeVar('N', int, float)


class Config:
    """Every setting of the service as a plain attribute.

    Defaults live in ``DEFAULT_*`` class constants; ``__init__`` reads the
    environment once. Tests replace attributes after construction (a fake Redis
    factory, a predictable uuid generator, a temporary storage path) before
    handing the config to :func:`asgilook.http.app.create_app`.
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
    DEFAULT_CACHE_MAX_ENTRY = 1024 * 1024
    DEFAULT_MEMORY_CACHE = 64 * 1024 * 1024
    DEFAULT_EVENTS_KEEPALIVE = 15.0
    DEFAULT_UPLOAD_TIMEOUT = 120.0
    DEFAULT_UPLOAD_MIN_RATE = 4 * 1024

    def __init__(self) -> None:
        self.storage_path = pathlib.Path(
            os.environ.get('ASGI_LOOK_STORAGE_PATH', self.DEFAULT_CONFIG_PATH)
        )
        self.storage_path.mkdir(parents=True, exist_ok=True)

        self.min_thumb_size = self.DEFAULT_MIN_THUMB_SIZE
        self.redis_host = os.environ.get('ASGI_LOOK_REDIS_URL', self.DEFAULT_REDIS_HOST)
        self.redis_from_url = self.DEFAULT_REDIS_FROM_URL
        self.uuid_generator = self.DEFAULT_UUID_GENERATOR
        self.image_workers = _positive(
            'ASGI_LOOK_IMAGE_WORKERS', self.DEFAULT_IMAGE_WORKERS, int
        )
        self.max_upload_bytes = _positive(
            'ASGI_LOOK_MAX_UPLOAD_BYTES', self.DEFAULT_MAX_UPLOAD_BYTES, int
        )
        self.max_pixels = _positive(
            'ASGI_LOOK_MAX_PIXELS', self.DEFAULT_MAX_PIXELS, int
        )
        self.redis_timeout = _positive(
            'ASGI_LOOK_REDIS_TIMEOUT', self.DEFAULT_REDIS_TIMEOUT, float
        )
        self.cache_max_entry = _positive(
            'ASGI_LOOK_CACHE_MAX_ENTRY', self.DEFAULT_CACHE_MAX_ENTRY, int
        )
        self.memory_cache = _positive(
            'ASGI_LOOK_MEMORY_CACHE', self.DEFAULT_MEMORY_CACHE, int
        )
        self.events_keepalive = _positive(
            'ASGI_LOOK_EVENTS_KEEPALIVE', self.DEFAULT_EVENTS_KEEPALIVE, float
        )
        # NOTE: Seconds for a whole request body, and the least average rate
        #   (bytes a second) it must arrive at after a few seconds' grace; a
        #   phone on a poor 3G link sends 10 KiB a second or more.
        self.upload_timeout = _positive(
            'ASGI_LOOK_UPLOAD_TIMEOUT', self.DEFAULT_UPLOAD_TIMEOUT, float
        )
        self.upload_min_rate = _positive(
            'ASGI_LOOK_UPLOAD_MIN_RATE', self.DEFAULT_UPLOAD_MIN_RATE, int
        )
        # NOTE: No admin token by default: then only an image's own delete
        #   token can delete it.
        self.admin_token: str | None = os.environ.get('ASGI_LOOK_ADMIN_TOKEN') or None
        # NOTE: No database URL by default: the index is then a SQLite file in
        #   the storage directory (see asgilook.storage.index).
        self.database_url: str | None = os.environ.get('ASGI_LOOK_DATABASE_URL') or None


def _positive(name: str, default: N, kind: Callable[[str], N]) -> N:
    """Read a positive number from the environment variable ``name``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    raise ValueError(f'{name} must be a positive number, not {raw!r}')

"""Settings of the service, read from ``ASGI_LOOK_*`` environment variables."""

import os
import pathlib
import uuid

import redis.asyncio


class Config:
    """Every setting of the service as a plain attribute.

    Defaults live in ``DEFAULT_*`` class constants; ``__init__`` reads the
    environment once. Tests replace attributes after construction (a fake Redis
    factory, a predictable uuid generator, a temporary storage path) before
    handing the config to :func:`asgilook.app.create_app`.
    """

    DEFAULT_CONFIG_PATH = '/tmp/asgilook'
    DEFAULT_MIN_THUMB_SIZE = 64
    DEFAULT_REDIS_HOST = 'redis://localhost'
    DEFAULT_REDIS_FROM_URL = staticmethod(redis.asyncio.from_url)
    DEFAULT_UUID_GENERATOR = staticmethod(uuid.uuid4)
    DEFAULT_IMAGE_WORKERS = 2

    def __init__(self) -> None:
        self.storage_path = pathlib.Path(
            os.environ.get('ASGI_LOOK_STORAGE_PATH', self.DEFAULT_CONFIG_PATH)
        )
        self.storage_path.mkdir(parents=True, exist_ok=True)

        self.min_thumb_size = self.DEFAULT_MIN_THUMB_SIZE
        self.redis_host = os.environ.get('ASGI_LOOK_REDIS_URL', self.DEFAULT_REDIS_HOST)
        self.redis_from_url = self.DEFAULT_REDIS_FROM_URL
        self.uuid_generator = self.DEFAULT_UUID_GENERATOR
        self.image_workers = int(
            os.environ.get('ASGI_LOOK_IMAGE_WORKERS', self.DEFAULT_IMAGE_WORKERS)
        )

"""``asgilook import --storage``: pictures stored in a storage directory, in-process."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping

from asgilook.caching.cache import RedisCache
from asgilook.caching.guard import Unavailable
from asgilook.commands import processes
from asgilook.commands import serve
from asgilook.commands.importer.folders import reason
from asgilook.commands.importer.target import Refused
from asgilook.commands.importer.target import TargetUnavailable
from asgilook.config import Config
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import StoreError
from asgilook.http.events import CREATED
from asgilook.http.events import Events
from asgilook.storage.store import Store


class Directory:
    """A storage directory, written in this process as a service writes it.

    A :class:`~asgilook.storage.store.Store` saves each picture, and a
    service on the directory sees it at its next request: the index is
    shared. Its cache is told too, when its Redis is known (a
    private Redis of ``asgilook serve``, or ``ASGI_LOOK_REDIS_URL``), as the
    service itself would: cached listings go stale, and open galleries are
    sent the picture.
    """

    warning: str | None = None

    def __init__(
        self,
        path: pathlib.Path,
        config: Config,
        store: Store,
        redis_url: str | None,
    ) -> None:
        self._path = path
        self._config = config
        self._store = store
        self.max_bytes: int | None = config.max_upload_bytes
        self.name = f'the storage directory {path}'
        self._cache: RedisCache | None = None
        self._events: Events | None = None
        # Whether an invalidation did not reach Redis (it is owed, then).
        self._missed = False
        self._quiet = logging.NullHandler()
        if redis_url:
            config.redis_host = redis_url
            self.name += f', cached in the Redis at {processes.redacted(redis_url)}'
            self._cache = RedisCache(config)
            self._events = Events(
                config, self._cache.redis, self._cache.guard, self._cache.keys
            )
            # NOTE: The guard's warnings are for a server's log ("serving
            #   without the cache"); close() says what it means here.
            logging.getLogger(RedisCache.__module__).addHandler(self._quiet)

    @classmethod
    async def open(
        cls, path: pathlib.Path, jobs: int, environ: Mapping[str, str]
    ) -> Directory:
        """Open the store in ``path``, making the directory if it is missing.

        The settings are those a service on ``path`` would have in
        ``environ``, which is read, never written.

        Raises:
            TargetUnavailable: the directory (or the settings) cannot be used.
        """
        redis_url = serve.serving_redis(path) or environ.get('ASGI_LOOK_REDIS_URL')
        try:
            # NOTE: Config makes the directory that ASGI_LOOK_STORAGE_PATH
            #   names, or its own default: it is given this one, so that it
            #   makes no other.
            config = Config.from_environ(
                {**environ, 'ASGI_LOOK_STORAGE_PATH': str(path)}
            )
            # As a service with as many Pillow threads as uploads at a time.
            config.image_workers = jobs
            return cls(path, config, Store(config), redis_url)
        except (OSError, ValueError) as ex:
            raise TargetUnavailable(
                f'cannot store pictures in {path}: {reason(ex)}.'
            ) from ex

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        image_id = str(self._config.uuid_generator())
        try:
            image, token = await self._store.save(image_id, data)
        except (StorageFull, StorageUnavailable) as ex:
            raise TargetUnavailable(
                f'cannot store pictures in {self._path}: {ex}'
            ) from ex
        except StoreError as ex:
            raise Refused(str(ex)) from ex
        if self._cache is not None and self._events is not None:
            # NOTE: As a service's upload does: every cached listing is stale,
            #   and open galleries are sent the picture.
            self._missed |= not await self._cache.invalidate()
            await self._events.publish(CREATED, image.serialize())
        return image_id, token

    async def close(self) -> None:
        await self._store.process_shutdown(None, None)
        if self._cache is None:
            return
        try:
            if self._missed:
                # Once more: the guard makes the owed invalidation first.
                await self._cache.guard.call(self._cache.redis.ping, probe=True)
        except Unavailable:
            self.warning = (
                f'the Redis at {processes.redacted(self._config.redis_host)} does '
                'not answer: a service on this storage directory may list what '
                'it had cached, without the new pictures, for up to an hour.'
            )
        finally:
            await self._cache.process_shutdown(None, None)
            logging.getLogger(RedisCache.__module__).removeHandler(self._quiet)

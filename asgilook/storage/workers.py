"""Where the store's blocking work runs: threads, off the event loop.

Pillow work runs in a pool of ``config.image_workers`` threads of its own, so
a burst of uploads waits its turn instead of decoding everything at once. The
pool is created when first needed and shut down with the ASGI lifespan, so
many apps can start and stop in one process. Disk work runs in the event
loop's default executor, and what goes wrong there is the store's error:
:class:`~asgilook.errors.StorageFull` or
:class:`~asgilook.errors.StorageUnavailable`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from asgilook.config import Config
from asgilook.storage.blobs import storage_error

T = TypeVar('T')


class Workers:
    """The threads of one store: Pillow's pool, and the loop's for the disk."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def pillow(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread of the Pillow pool."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._config.image_workers,
                thread_name_prefix='asgilook-pillow',
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def disk(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread of the loop's default executor.

        Raises:
            StorageFull: the disk is full, or the quota used up.
            StorageUnavailable: any other error of the file system.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, func, *args)
        except OSError as ex:
            raise storage_error(ex) from ex

    def shutdown(self) -> None:
        """Let the Pillow pool go; the next work starts another."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

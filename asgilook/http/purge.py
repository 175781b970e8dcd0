"""Surrogate keys, and purges by key: caches in front that can forget a picture.

Every answer that shows a picture names it in ``Surrogate-Key`` (Fastly's and
Varnish xkey's spelling: keys separated by spaces) and in ``Cache-Tag``
(Cloudflare's: separated by commas): the original, its thumbnails and its
animation say ``asgilook-image-<id> asgilook-images``; a page of the listing
says ``asgilook-listing`` and the keys of the pictures it shows, or
``asgilook-listing`` alone when those would make the header longer than
:data:`MAX_KEYS_LENGTH`. The memory's replays of those answers carry the same
headers, since it remembers them (see :mod:`asgilook.caching.memory`).

With ``ASGI_LOOK_PURGE_URL`` set, :class:`Purger` sends one request to it
after a deletion commits and after an upload replaced a picture: its method
is ``ASGI_LOOK_PURGE_METHOD`` (``PURGE``), and its ``Surrogate-Key`` header
names the keys to forget: ``asgilook-image-<id> asgilook-listing``. It is
sent in the background, within :data:`TIMEOUT`, and never delays or fails the
client's answer. A failure (no answer, or a status of 400 or more) is logged
once, as a warning of the logger ``asgilook.http.purge``, until a purge goes
through again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import falcon.asgi
import httpx

logger = logging.getLogger(__name__)

#: The key of every answer that shows a picture.
IMAGES_KEY = 'asgilook-images'
#: The key of every page of the listing.
LISTING_KEY = 'asgilook-listing'
#: The longest ``Surrogate-Key`` a listing page gets: past it, the page says
#: ``asgilook-listing`` alone (a default page of 100 pictures fits; Varnish
#: takes response headers of up to 8 kB each by default).
MAX_KEYS_LENGTH = 6 * 1024
#: Seconds a purge request may take, all of it.
TIMEOUT = 2.0


def image_key(image_id: str) -> str:
    """The surrogate key of one picture: of its original, thumbnails, animation."""
    return f'asgilook-image-{image_id}'


def image_keys(image_id: str) -> list[str]:
    """The keys of an answer that shows the picture ``image_id``."""
    return [image_key(image_id), IMAGES_KEY]


def listing_keys(image_ids: Iterable[str]) -> list[str]:
    """The keys of a listing page that shows ``image_ids``, within the bound."""
    keys = [LISTING_KEY, *(image_key(image_id) for image_id in image_ids)]
    if sum(len(key) + 1 for key in keys) - 1 > MAX_KEYS_LENGTH:
        return [LISTING_KEY]
    return keys


def purged_keys(image_id: str) -> list[str]:
    """What a purge of the picture ``image_id`` asks caches to forget."""
    return [image_key(image_id), LISTING_KEY]


def set_keys(resp: falcon.asgi.Response, keys: list[str]) -> None:
    """Name ``keys`` in a Falcon response's ``Surrogate-Key`` and ``Cache-Tag``."""
    resp.set_header('Surrogate-Key', ' '.join(keys))
    resp.set_header('Cache-Tag', ','.join(keys))


class Purger:
    """Sends purges by key to one URL, in the background; a Falcon middleware
    that waits for those still under way when the app shuts down.

    Args:
        url: Where purges go; None: nowhere (:meth:`forget` does nothing).
        method: The method of a purge request.
    """

    def __init__(self, url: str | None, method: str) -> None:
        self.url = url
        self.method = method
        self._pending: set[asyncio.Task[None]] = set()
        self._failing = False

    def forget(self, keys: list[str]) -> None:
        """Ask the caches in front to forget ``keys``, without waiting."""
        if self.url is None:
            return
        task = asyncio.get_running_loop().create_task(self.purge(keys))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def purge(self, keys: list[str]) -> None:
        """Send one purge of ``keys``; log a failure once, and the recovery."""
        assert self.url is not None
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
                answer = await client.request(
                    self.method, self.url, headers={'Surrogate-Key': ' '.join(keys)}
                )
            if answer.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f'{answer.status_code} {answer.reason_phrase}',
                    request=answer.request,
                    response=answer,
                )
        except httpx.HTTPError as ex:
            if not self._failing:
                self._failing = True
                logger.warning(
                    'The purge at %s failed (%s: %s): caches in front may show '
                    'deleted or replaced pictures until their lifetimes end; '
                    'logged again when a purge goes through',
                    self.url,
                    type(ex).__name__,
                    ex,
                )
            return
        if self._failing:
            self._failing = False
            logger.warning('The purge at %s answers again', self.url)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        """Wait for the purges still under way (each ends within ``TIMEOUT``)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

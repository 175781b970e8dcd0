"""The names of everything the service keeps in Redis, for one deployment.

Several deployments may share one Redis: two services, or a service and a
copy of its storage directory restored elsewhere. None may ever answer with
another's entries, or stream another's events. Each deployment has a scope
(see :func:`asgilook.storage.store.deployment_scope`), and:

* The cache's entries keep the names that the tutorial gave them, a fixed
  prefix and the request path (``asgilook:/images``), as its users read
  them; what they carry tells whose they are. A whole response carries the
  generation it was stored in, and the generation is the deployment's own
  (``asgilook-generation:<scope>``), so another deployment's entry is never
  current here: it is a miss, and replaced. An image version's entry
  carries the scope itself.
* Every other key has the scope in its name: the generation, the event
  stream (``asgilook-events:<scope>``), the upload rates of upload keys
  (``asgilook-rate:<scope>:<key name>``).
* ``ASGI_LOOK_REDIS_PREFIX`` (empty by default) goes in front of every key,
  entries included, for deployments that share a Redis on purpose and want
  no key in common.

The scope takes the index to find (the first time only): until it is known,
Redis is not used, as when Redis is away (:class:`~asgilook.caching.guard.Unavailable`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable

from asgilook.caching.guard import Unavailable
from asgilook.config import Config
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.storage.index import open_index
from asgilook.storage.store import deployment_scope

#: The prefix of the cache's entries, before the request path.
ENTRY = 'asgilook:'
#: The name of a deployment's generation, before its scope.
GENERATION = 'asgilook-generation'
#: The name of a deployment's event stream, before its scope.
EVENTS = 'asgilook-events'
#: The name of an upload key's recent uploads, before the scope and key name.
RATE = 'asgilook-rate'


class Keys:
    """The Redis keys of one deployment.

    Args:
        prefix: Put in front of every key (``ASGI_LOOK_REDIS_PREFIX``).
        find_scope: Finds the deployment's scope; it may raise
            :class:`~asgilook.errors.StorageUnavailable` while the index
            cannot be reached.
    """

    def __init__(self, prefix: str, find_scope: Callable[[], Awaitable[str]]) -> None:
        self.prefix = prefix
        self._find_scope = find_scope
        self._scope: str | None = None

    @classmethod
    def of(
        cls, config: Config, find_scope: Callable[[], Awaitable[str]] | None = None
    ) -> Keys:
        """The keys of the deployment that ``config`` names.

        Its scope is found by ``find_scope`` (the store's), or else from the
        index that ``config`` names, opened for that and closed again.
        """

        async def find() -> str:
            index = open_index(config)
            try:
                return await deployment_scope(index)
            finally:
                await index.close()

        return cls(config.redis_prefix, find_scope or find)

    async def scope(self) -> str:
        """The deployment's scope, found the first time it is asked for.

        Raises:
            Unavailable: it cannot be found now (the index cannot be reached);
                go on without Redis.
        """
        if self._scope is None:
            try:
                self._scope = await self._find_scope()
            except (StorageFull, StorageUnavailable) as ex:
                raise Unavailable from ex
        return self._scope

    def entry(self, path: str) -> str:
        """The key of the cache's entry for ``path`` (with its query, if any)."""
        return f'{self.prefix}{ENTRY}{path}'

    def generation(self, scope: str) -> str:
        """The key of the deployment's generation of whole responses."""
        return f'{self.prefix}{GENERATION}:{scope}'

    def events(self, scope: str) -> str:
        """The key of the deployment's stream of events."""
        return f'{self.prefix}{EVENTS}:{scope}'

    def rate(self, scope: str, name: str) -> str:
        """The key of the recent uploads of the upload key ``name``."""
        return f'{self.prefix}{RATE}:{scope}:{name}'

"""Caching: answering again what was answered before, without redoing the work.

- :mod:`~asgilook.caching.conditional`: validators (``ETag``,
  ``Last-Modified``) and conditional requests (``304``), on header strings.
- :mod:`~asgilook.caching.memory`: whole responses kept in this process's
  memory and replayed at the ASGI level, before Falcon, while the version
  they show is current.
- :mod:`~asgilook.caching.cache`: :class:`~asgilook.caching.cache.RedisCache`,
  the Falcon middleware that keeps responses in Redis (the tutorial's cache,
  ``X-ASGILook-Cache``) and feeds the memory.
- :mod:`~asgilook.caching.status`: what an answer says of the cache:
  ``X-ASGILook-Cache`` and ``Cache-Status`` (RFC 9211).
- :mod:`~asgilook.caching.guard`: time limits and a circuit breaker around
  every Redis call, so that Redis stays an accelerator and never a dependency.
- :mod:`~asgilook.caching.rates`: upload rates per upload key, a sliding
  minute shared through Redis (per process while Redis is away).

Layer: below :mod:`asgilook.http`, above :mod:`asgilook.storage` and
:mod:`asgilook.pictures`. It may import those two, :mod:`asgilook.config`,
:mod:`asgilook.errors`, Redis and Falcon's request and response types (the
middleware is Falcon's); never :mod:`asgilook.http` nor
:mod:`asgilook.commands` (``make lint`` checks, see ``[tool.importlinter]``).
"""

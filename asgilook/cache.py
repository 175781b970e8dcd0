"""The tutorial's ``asgilook.cache``: the :class:`RedisCache` middleware.

It lives in :mod:`asgilook.caching.cache`; this name is kept for the
tutorial's users.
"""

from asgilook.caching.cache import RedisCache

__all__ = ['RedisCache']

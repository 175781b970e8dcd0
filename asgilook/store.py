"""The tutorial's ``asgilook.store``: :class:`Store` and :class:`Image`.

They live in :mod:`asgilook.storage.store`; this name is kept for the
tutorial's users (see the contract in ``docs/development.rst``).
"""

from asgilook.storage.store import Image
from asgilook.storage.store import Store

__all__ = ['Image', 'Store']

"""The tutorial's ``asgilook.images``: :class:`Images`, :class:`Thumbnails`.

They live in :mod:`asgilook.http.images`; this name is kept for the
tutorial's users.
"""

from asgilook.http.images import Images
from asgilook.http.images import Thumbnails

__all__ = ['Images', 'Thumbnails']

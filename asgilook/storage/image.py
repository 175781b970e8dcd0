"""What the store hands out: a version of an image, and the bytes of its objects.

An :class:`Image` is one stored version of a picture: its id, size and time
of upload, the name of its original (whose objects are named after it, see
:mod:`asgilook.storage.objects`) and the URIs they are served at. A
:class:`~asgilook.storage.blobs.Body` is the bytes of one of its objects:
whole if small, else a :class:`~asgilook.storage.blobs.Reader` of them.
"""

from __future__ import annotations

import datetime
import os
import pathlib
from typing import Any

from asgilook.config import Config
from asgilook.pictures import Size
from asgilook.pictures import kept
from asgilook.pictures import pixels
from asgilook.pictures import renditions


class Image:
    """One stored version of a picture: its id, pixel size and time of upload."""

    def __init__(
        self,
        config: Config,
        image_id: str,
        size: Size,
        modified: datetime.datetime | None = None,
        path: pathlib.Path | None = None,
        placeholder: str = '',
        animated: bool = False,
        name: str = '',
        visibility: str = 'public',
        owner: str = '',
        original: str = '',
    ) -> None:
        self._config = config
        self.image_id = image_id
        self.size = size
        self.modified = modified or datetime.datetime.now(datetime.UTC)
        #: A tiny stand-in, as a data URI ('' if there is none).
        self.placeholder = placeholder
        #: Whether there is an animated rendition (:attr:`animation_path`).
        self.animated = animated
        #: The uploaded file's name, as given ('' if none was).
        self.name = name
        #: ``public``, ``unlisted`` or ``private`` (see asgilook.http.sharing).
        self.visibility = visibility
        #: The name of the upload key it was uploaded with ('' if none).
        self.owner = owner
        #: The extension of the original kept as uploaded ('' if the JPEG is
        #: the original; see :mod:`asgilook.pictures.kept`).
        self.original = original
        #: Whether storing this version replaced another of the same id (as
        #: :meth:`asgilook.storage.store.Store.save` tells).
        self.replaced = False
        # NOTE: Each version of an image has a file of its own (see Store), so
        #   the path comes from the index; the default is for images made by
        #   hand.
        self.path = path or (
            pathlib.Path(os.fspath(config.storage_path)) / 'images' / f'{image_id}.jpeg'
        )

    @property
    def uri(self) -> str:
        return f'/images/{self.image_id}.jpeg'

    @property
    def page_uri(self) -> str:
        """The URI of the picture's page, for people and link previews."""
        return f'/pictures/{self.image_id}'

    @property
    def animation_uri(self) -> str:
        return f'/images/{self.image_id}.webp'

    @property
    def original_uri(self) -> str:
        """The URI of the original kept as uploaded (if there is one)."""
        return f'/images/{self.image_id}/original'

    @property
    def original_type(self) -> str:
        """The media type of the original kept as uploaded."""
        return kept.MEDIA_TYPES[self.original]

    @property
    def file(self) -> str:
        """The name of this version's original, which its objects are named after."""
        return self.path.name

    @property
    def animation_path(self) -> pathlib.Path:
        """Where this version's animated rendition is in a local storage
        directory, if it has one."""
        return self.path.with_suffix('.webp')

    @property
    def version(self) -> str:
        """What tells this version of the picture from every other one."""
        return self.path.stem.partition('.')[2] or '0'

    def etag(self, size: Size | None = None, name: str = renditions.JPEG) -> str:
        """The strong entity tag of the original (or its animation), or of one
        thumbnail in a format."""
        suffix = '' if name == renditions.JPEG else f'-{name}'
        if size is None:
            return f'"{self.version}{suffix}"'
        width, height = size
        return f'"{self.version}-{width}x{height}{suffix}"'

    def thumbnail_sizes(self) -> list[Size]:
        """The fixed series of thumbnail sizes, largest first.

        Each halves the previous one (mipmap style) for as long as both sides
        stay at least ``min_thumb_size`` pixels.
        """
        return pixels.thumbnail_sizes(self.size, self._config.min_thumb_size)

    def thumbnail_uri(self, size: Size) -> str:
        width, height = size
        return f'/thumbnails/{self.image_id}/{width}x{height}.jpeg'

    def thumbnail_path(self, size: Size, name: str = renditions.JPEG) -> pathlib.Path:
        """Where this version's thumbnail of ``size`` in format ``name`` is, in a
        local storage directory."""
        width, height = size
        return (
            self.path.parent.parent
            / 'thumbnails'
            / self.path.name.removesuffix('.jpeg')
            / f'{width}x{height}.{name}'
        )

    def thumbnails(self) -> list[str]:
        return [self.thumbnail_uri(size) for size in self.thumbnail_sizes()]

    def srcset(self) -> str:
        """Every rendition with its width, smallest first, for ``<img srcset>``.

        The URLs name this version (``?v=``): they never change, and browsers
        may keep them for good.
        """
        return ', '.join(f'{uri} {width}w' for uri, (width, _) in self.sources())

    def sources(self) -> list[tuple[str, Size]]:
        """Every rendition's ``?v=`` URI and size, smallest first, the original
        last."""
        found = [
            (f'{self.thumbnail_uri(size)}?v={self.version}', size)
            for size in reversed(self.thumbnail_sizes())
        ]
        found.append((f'{self.uri}?v={self.version}', self.size))
        return found

    def serialize(self) -> dict[str, Any]:
        return {
            'id': self.image_id,
            'image': self.uri,
            'modified': http_date(self.modified),
            'size': list(self.size),
            'thumbnails': self.thumbnails(),
            'version': self.version,
            'srcset': self.srcset(),
            'placeholder': self.placeholder or None,
            'animation': self.animation_uri if self.animated else None,
            'page': self.page_uri,
            'name': self.name or None,
            'visibility': self.visibility,
            'original': self.original_uri if self.original else None,
        }


def http_date(moment: datetime.datetime) -> str:
    """An HTTP date (RFC 9110, 5.6.7), as :func:`falcon.dt_to_http` writes it."""
    return moment.strftime('%a, %d %b %Y %H:%M:%S GMT')

"""The files of the storage directory: where each version's bytes live.

``images/<id>.<version>.jpeg`` is a version's original, and
``thumbnails/<id>.<version>/<width>x<height>.jpeg`` its thumbnails. A
version's files are written under temporary names, synced and renamed into
place before the index lists it, and never change afterwards; replacing or
deleting the image removes them. The index (:mod:`asgilook.storage.index`) says
which version of each image is current.

Everything here blocks: the store calls it from a thread.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil


def fsync_directory(path: pathlib.Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: pathlib.Path, data: bytes) -> None:
    """Write a file under a temporary name, sync it, and rename it into place."""
    partial = path.with_name(f'.{path.name}.{secrets.token_hex(4)}.partial')
    try:
        with open(partial, 'wb') as output:
            output.write(data)
            output.flush()
            os.fsync(output.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


class Files:
    """The layout of one storage directory."""

    IMAGES = 'images'
    THUMBNAILS = 'thumbnails'

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.images = root / self.IMAGES
        self.thumbnails = root / self.THUMBNAILS

    def make(self) -> None:
        """Create the directories, if they are not there yet."""
        self.images.mkdir(parents=True, exist_ok=True)
        self.thumbnails.mkdir(exist_ok=True)

    def thumbnails_of(self, file: str) -> pathlib.Path:
        """The directory of the thumbnails of the version whose original is ``file``."""
        return self.thumbnails / file.removesuffix('.jpeg')

    def write_original(self, name: str, data: bytes) -> None:
        write_durably(self.images / name, data)
        fsync_directory(self.images)

    def write_thumbnails(
        self,
        name: str,
        thumbnails: list[tuple[tuple[int, int], bytes]],
        suffix: str = 'jpeg',
    ) -> None:
        """Write the thumbnails of the version whose original is ``name``."""
        directory = self.thumbnails_of(name)
        directory.mkdir(exist_ok=True)
        for (width, height), data in thumbnails:
            write_durably(directory / f'{width}x{height}.{suffix}', data)
        fsync_directory(directory)
        fsync_directory(self.thumbnails)

    def write_animation(self, name: str, data: bytes) -> None:
        """Write the animated rendition of the version whose original is ``name``."""
        write_durably(self.images / self.animation_of(name), data)
        fsync_directory(self.images)

    @staticmethod
    def animation_of(file: str) -> str:
        """The animated rendition's name, of the version whose original is ``file``."""
        return f'{file.removesuffix(".jpeg")}.webp'

    def discard_version(self, file: str) -> None:
        """Remove a version's original ``file``, its renditions and thumbnails."""
        for name in (file, self.animation_of(file)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.images / name)
        shutil.rmtree(self.thumbnails_of(file), ignore_errors=True)

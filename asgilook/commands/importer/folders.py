"""The pictures under the folders given to ``asgilook import``, and their bytes.

:func:`find` walks the folders in order (links to folders are not followed)
and keeps the files named as pictures (:data:`PICTURES`); :func:`read` reads
one, with its SHA-256. What became of every file found is counted in a
:class:`Tally`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import stat
from collections.abc import Iterator
from collections.abc import Sequence

#: What is a picture, by its name's extension (in any case).
PICTURES = frozenset(
    {'.jpg', '.jpeg', '.png', '.gif', '.webp', '.bmp', '.tif', '.tiff'}
    # HEIC, as iPhones name it (.heif too), and AVIF.
    | {'.heic', '.heif', '.avif'}
)


@dataclasses.dataclass(frozen=True)
class Picture:
    path: pathlib.Path
    size: int


@dataclasses.dataclass
class Tally:
    """What became of the files found."""

    imported: int = 0
    imported_bytes: int = 0
    already: int = 0
    not_pictures: int = 0
    #: Pictures imported, skipped, refused or unreadable: the rest were not tried.
    settled: int = 0
    #: (file, why) of each picture that the service or the store refused.
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: (file or folder, why) of each one that could not be read.
    unreadable: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def find(roots: Sequence[pathlib.Path], tally: Tally) -> list[Picture]:
    """The pictures under ``roots``, in order; other files are counted in ``tally``."""
    pictures = []
    for root in roots:
        for path in _files(root, tally):
            if path.suffix.lower() not in PICTURES:
                tally.not_pictures += 1
                continue
            try:
                size = path.stat().st_size
            except OSError:
                # NOTE: Kept all the same: reading it says why it cannot be.
                size = 0
            pictures.append(Picture(path, size))
    return pictures


def _files(root: pathlib.Path, tally: Tally) -> Iterator[pathlib.Path]:
    if not root.is_dir():
        yield root
        return

    def unreadable(ex: OSError) -> None:
        tally.unreadable.append(
            (str(ex.filename), f'The folder cannot be read: {reason(ex)}.')
        )

    # NOTE: Links to folders are not followed: one could lead back up.
    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        subfolders.sort()
        for name in sorted(names):
            yield pathlib.Path(folder, name)


def read(path: pathlib.Path) -> tuple[bytes, str]:
    """A file's bytes and their SHA-256.

    Raises:
        OSError: it cannot be read, or is not a regular file.
    """
    # NOTE: O_NONBLOCK, so that a named pipe called photo.jpg cannot make
    #   the import wait forever; it is not a regular file, and is refused.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, 'rb') as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError('it is not a regular file')
        data = file.read()
    return data, hashlib.sha256(data).hexdigest()


def reason(ex: BaseException) -> str:
    """Why an operating-system call failed, without the ``[Errno N]`` prefix."""
    return getattr(ex, 'strerror', None) or str(ex)

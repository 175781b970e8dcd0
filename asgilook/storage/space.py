"""Free space where the objects are kept: is there room for one more upload?

An upload of ``max_upload_bytes`` takes more than that on disk: its original
(about as many bytes, for a photo), its JPEG thumbnails at once, its AVIF and
WebP thumbnails when first asked for, an animated rendition if it moves, a
row of the index. :data:`FACTOR` is that whole as a multiple of the upload,
measured on real photos by ``bench/disk.py`` (see *Disk per picture* in
``docs/operations.rst``), with room to spare. :func:`measure` asks the file
system of each local directory that holds objects (``statvfs``: one system
call, a few microseconds, made in a thread all the same: a hung network
mount must not hang the event loop) how much is free, and says whether that
is enough (:attr:`Space.enough`) or as good as nothing (:attr:`Space.full`).

A bucket has no free space to ask for: its figures are ``None``, and only
its own answer to a write (``507``) tells that it is full.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
from typing import Any

from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.objects import Objects

#: What an upload may take on disk in all, as a multiple of its own bytes.
#: NOTE: ``bench/disk.py`` measured 1.4 to 2.1 on camera photos (JPEG, 12-20
#:   MP: the original as uploaded, JPEG, WebP and AVIF thumbnails, the index
#:   row); the more a photo is compressed, the bigger its thumbnails are next
#:   to it. 2.5 leaves room for more compressed ones. A JPEG made from a
#:   denser format (HEIF, AVIF, WebP) may be bigger than its upload, though:
#:   this is a planning figure, not a bound.
FACTOR = 2.5

#: Below this many free bytes, a volume counts as full: no photo fits.
#: NOTE: The smallest camera photo ``bench/disk.py`` measured takes 1.6 MB at
#:   upload (1.1 MB of original, 0.46 MB of JPEG thumbnails), and an index
#:   write needs a few pages for its log as well (SQLite's WAL, when the
#:   index is in the directory): under 1 MiB, a photo's upload can only fail
#:   (a small picture may still fit), and a process that takes uploads is
#:   better out of the load balancer. Well above the few kB a write needs.
FLOOR = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    """The free space of the tightest local volume that holds objects."""

    #: Free bytes (for an unprivileged user, as ``df`` shows them); None for a
    #: bucket, or a volume that cannot be asked.
    free: int | None
    #: The volume's size in bytes; None as for ``free``.
    total: int | None
    #: What an upload of the largest size allowed may take there.
    needed: int
    #: The volume, or why there are no figures.
    where: str

    @property
    def full(self) -> bool:
        """Whether it is below :data:`FLOOR`: no photo fits."""
        return self.free is not None and self.free < FLOOR

    @property
    def enough(self) -> bool:
        """Whether the largest upload fits (or it cannot be told: a bucket)."""
        return self.free is None or self.free >= self.needed

    @property
    def detail(self) -> str:
        """What an operator reads in ``/healthz``."""
        if self.free is None:
            return self.where
        free = f'{_size(self.free)} free of {_size(self.total or 0)} in {self.where}'
        if self.full:
            return (
                f'{free}: full, below the floor of {_size(FLOOR)}, too little '
                'for a photo; uploads fail with 507'
            )
        if not self.enough:
            return (
                f'{free}: an upload of the largest size allowed may need '
                f'{_size(self.needed)}; uploads may fail with 507'
            )
        return f'{free}; an upload may need {_size(self.needed)}'

    def report(self) -> dict[str, Any]:
        """The ``space`` member of ``/healthz``."""
        return {
            'ok': self.enough,
            'detail': self.detail,
            'free_bytes': self.free,
            'total_bytes': self.total,
            'needed_bytes': self.needed,
        }


def needed(max_upload_bytes: int) -> int:
    """What an upload of ``max_upload_bytes`` may take on disk, in all."""
    return int(max_upload_bytes * FACTOR)


def directories(objects: Objects) -> list[pathlib.Path]:
    """The local directories that hold objects: originals, and renditions."""
    found = []
    for blobs in (objects.originals, objects.renditions):
        inner = blobs.inner
        if isinstance(inner, LocalBlobs) and inner.root not in found:
            found.append(inner.root)
    return found


def _statvfs(path: pathlib.Path) -> os.statvfs_result:
    # NOTE: A module function, so that the tests can swap it for a fake.
    return os.statvfs(path)


def _tightest(roots: list[pathlib.Path], needs: int) -> Space:
    """Ask each directory's volume, in a thread; the one with least free."""
    seen = []
    for root in roots:
        try:
            status = _statvfs(root)
        except OSError as ex:
            reason = os.strerror(ex.errno) if ex.errno else type(ex).__name__
            return Space(None, None, needs, f'{root} cannot be measured ({reason})')
        free = status.f_bavail * status.f_frsize
        seen.append((free, status.f_blocks * status.f_frsize, str(root)))
    free, total, where = min(seen)
    return Space(free, total, needs, where)


async def measure(objects: Objects, max_upload_bytes: int) -> Space:
    """The free space where ``objects`` are kept, against the largest upload.

    Every local directory must hold a whole upload (conservative when the
    renditions are kept apart: each then holds only its part). Without one,
    a bucket's figures are None.
    """
    needs = needed(max_upload_bytes)
    roots = directories(objects)
    if not roots:
        return Space(None, None, needs, 'in a bucket: it has no free space to ask for')
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _tightest, roots, needs)


def _size(count: int) -> str:
    """Bytes for people: ``392 kB``, ``1.5 MB``, ``12.3 GB``."""
    for unit, scale in (('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
        if count >= scale:
            return f'{count / scale:.3g} {unit}'
    return f'{count} bytes'

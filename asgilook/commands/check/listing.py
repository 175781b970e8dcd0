"""The objects of ``asgilook check`` that no version of the index refers to.

:func:`scan` lists ``images/`` and ``thumbnails/`` where they are kept
(:meth:`~asgilook.storage.blobs.Blobs.list`, a page at a time, on a local
directory and on S3 alike; never every key in memory) and finds the orphans:
originals, kept originals and animations of versions the index does not list,
and thumbnail folders (the objects under ``thumbnails/<id>.<version>/``) of
such versions, each as one problem with the bytes of all its objects. The
other thumbnails (AVIF, WebP) of the versions it lists are read as they come
(see :mod:`~asgilook.commands.check.reading`). What the layout does not name
(deeper keys, other names) is not asgilook's: it is left alone, uncounted.

:func:`partials` finds the ``.partial`` files of local directories: writes
that never finished, which no listing shows. S3 has none: an object is
written with one request, whole or not at all.

Objects (and partials) younger than the grace period are left alone: they may
be an upload in progress.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time

from asgilook.commands.check import output
from asgilook.commands.check.reading import Reads
from asgilook.commands.check.reading import rendition
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report
from asgilook.pictures import renditions
from asgilook.storage.blobs.local import PARTIAL
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.objects import IMAGES
from asgilook.storage.objects import THUMBNAILS
from asgilook.storage.objects import Objects


def unlisted(report: Report, problem: Problem, modified: float) -> None:
    """An orphan or a partial: a problem if old enough, else left alone."""
    problem.age = time.time() - modified
    problem.detail = f'{output.size(problem.bytes)}, {output.age(problem.age)} old'
    if problem.age >= report.grace:
        report.add(problem)
    else:
        report.young.append(problem)


# Objects


async def scan(objects: Objects, listed: set[str], report: Report) -> None:
    """Count the objects, and find those that no version in ``listed`` refers to.

    Raises:
        StorageUnavailable, StorageFull: a backend cannot be used.
    """
    # NOTE: Apart, the originals' images/ holds originals (and those kept as
    #   uploaded), the renditions' animations.
    images = (
        [(objects.originals, ('jpeg', 'original')), (objects.renditions, ('webp',))]
        if objects.apart
        else [(objects.originals, ('jpeg', 'original', 'webp'))]
    )
    for blobs, suffixes in images:
        await _images(blobs, listed, report, suffixes)
    await _Thumbnails(objects.renditions, listed, report).scan()


async def _images(
    blobs: SealedBlobs,
    listed: set[str],
    report: Report,
    suffixes: tuple[str, ...],
) -> None:
    """The originals, kept originals and animations in ``images/`` (by their
    ``suffixes``)."""
    async for item in blobs.list(IMAGES):
        _, _, name = item.key.partition('/')
        if '/' in name:
            continue
        report.seen(item.size)
        stem, _, suffix = name.rpartition('.')
        if suffix not in suffixes or f'{stem}.jpeg' in listed:
            # NOTE: Anything else is not asgilook's: it is left alone.
            continue
        orphan = Problem(
            Kind.ORPHAN,
            item.key,
            name.partition('.')[0],
            bytes=item.size,
            file=f'{stem}.jpeg',
            blobs=blobs,
        )
        unlisted(report, orphan, item.modified)


class _Thumbnails:
    """The thumbnail folders, as the listing of ``thumbnails/`` goes by.

    A folder's objects come one after another (a prefix's keys are together
    in a listing, on a local directory and on S3): each orphan folder is
    added up as they come, and is a problem once the next folder starts.
    """

    def __init__(self, blobs: SealedBlobs, listed: set[str], report: Report) -> None:
        self._blobs = blobs
        self._listed = listed
        self._report = report
        self._reads = Reads(blobs, report.verify, report.add)
        #: The orphan folder being added up, and its newest object's time.
        self._orphan: Problem | None = None
        self._newest = 0.0

    async def scan(self) -> None:
        async for item in self._blobs.list(THUMBNAILS):
            parts = item.key.split('/')
            if len(parts) != 3:
                continue
            self._report.seen(item.size)
            file = f'{parts[1]}.jpeg'
            if file not in self._listed:
                self._add(parts[1], file, item.size, item.modified)
                continue
            found = rendition(item.key)
            # NOTE: Its JPEG thumbnails were read with the version.
            if found is not None and found[1] != renditions.JPEG:
                await self._reads.add(item.key, file)
        self._close()
        await self._reads.flush()

    def _add(self, folder: str, file: str, size: int, modified: float) -> None:
        """Add an object of an orphan folder."""
        prefix = f'{THUMBNAILS}/{folder}/'
        if self._orphan is None or self._orphan.path != prefix:
            self._close()
            self._orphan = Problem(
                Kind.ORPHAN,
                prefix,
                folder.partition('.')[0],
                file=file,
                blobs=self._blobs,
            )
            self._newest = modified
        self._orphan.bytes += size
        self._newest = max(self._newest, modified)

    def _close(self) -> None:
        """The orphan folder added up, if any: it is as young as its newest."""
        if self._orphan is not None:
            unlisted(self._report, self._orphan, self._newest)
            self._orphan = None


# Partials


async def partials(objects: Objects, report: Report) -> None:
    """Find the ``.partial`` files of the local directories objects are kept in.

    Raises:
        OSError: a folder that a local directory has (``images/`` where the
            originals are, ``thumbnails/`` where the renditions are) cannot
            be read.
    """
    images: dict[pathlib.Path, bool] = {}
    thumbnails = None
    originals = _root(objects.originals)
    if originals is not None:
        images[originals / IMAGES] = True
    root = _root(objects.renditions)
    if root is not None:
        # NOTE: Apart, its images/ holds animations only, made when first
        #   needed.
        images.setdefault(root / IMAGES, False)
        thumbnails = root / THUMBNAILS
    for path, relative, size, modified in await asyncio.to_thread(
        _sweep, images, thumbnails
    ):
        report.seen(size)
        partial = Problem(Kind.PARTIAL, relative, bytes=size, local=path)
        unlisted(report, partial, modified)


def _root(blobs: SealedBlobs) -> pathlib.Path | None:
    inner = blobs.inner
    return inner.root if isinstance(inner, LocalBlobs) else None


_Partial = tuple[pathlib.Path, str, int, float]


def _sweep(
    images: dict[pathlib.Path, bool], thumbnails: pathlib.Path | None
) -> list[_Partial]:
    """The partials in ``images`` (each required or not), and in each folder of
    ``thumbnails``."""
    found = []
    for path, required in images.items():
        found.extend(_partials_in(path, IMAGES, required))
    if thumbnails is not None:
        with os.scandir(thumbnails) as folders:
            for folder in folders:
                if folder.is_dir(follow_symlinks=False):
                    path = pathlib.Path(folder.path)
                    found.extend(_partials_in(path, f'{THUMBNAILS}/{folder.name}'))
    return found


def _partials_in(
    folder: pathlib.Path, relative: str, required: bool = False
) -> list[_Partial]:
    """The partials in ``folder``; none if it is gone, unless ``required``."""
    found: list[_Partial] = []
    try:
        items = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        # NOTE: A version's folder discarded meanwhile, say.
        if required:
            raise
        return found
    with items:
        for item in items:
            if not (item.name.startswith('.') and item.name.endswith(PARTIAL)):
                continue
            try:
                stat = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                # NOTE: A write that just finished, or was given up.
                continue
            path = pathlib.Path(item.path)
            found.append((path, f'{relative}/{item.name}', stat.st_size, stat.st_mtime))
    return found

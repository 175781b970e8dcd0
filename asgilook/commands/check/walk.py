"""The walk of ``asgilook check``: the index a page at a time, then the folders.

:func:`find` reads the index (newest first, :data:`PAGE` entries at a time)
and looks at the files of each version it lists; then it streams the
``images/`` and ``thumbnails/`` folders with ``os.scandir`` for the files no
listed version refers to. What it keeps is the set of the original file names
in the index, and the problems it found, in the report.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from collections.abc import Iterator

from asgilook.commands.check import output
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report
from asgilook.config import Config
from asgilook.pictures import Size
from asgilook.pictures import pixels
from asgilook.storage.files import Files
from asgilook.storage.index import Entry
from asgilook.storage.index import Index

#: Entries read from the index at a time.
PAGE = 1000


async def find(config: Config, index: Index, report: Report) -> None:
    """Put in ``report`` what is wrong in its storage directory, by ``index``.

    Raises:
        StorageUnavailable, StorageFull: the index cannot be used.
        OSError: the storage directory cannot be read.
    """
    walk = _Walk(config, index, report)
    await walk.read_index()
    await asyncio.to_thread(walk.scan)


class _Walk:
    def __init__(self, config: Config, index: Index, report: Report) -> None:
        self._min_thumb_size = config.min_thumb_size
        self._index = index
        self._report = report
        self._files = Files(report.storage)
        #: The original file of every version of the index seen.
        self._listed: set[str] = set()

    # The index, and the files of the versions it lists

    async def read_index(self) -> None:
        # NOTE: Newest first: an image replaced while this reads becomes the
        #   newest, and a page after it then starts again from the top
        #   (versions seen are skipped) rather than ending early. Uploads
        #   listed meanwhile are left out; their files are young.
        after = None
        while True:
            entries, _ = await self._index.page(PAGE, after, newest_first=True)
            fresh = [entry for entry in entries if entry.file not in self._listed]
            self._listed.update(entry.file for entry in fresh)
            await asyncio.to_thread(self._examine, fresh)
            if len(entries) < PAGE:
                return
            after = entries[-1].image_id

    def _examine(self, entries: list[Entry]) -> None:
        report = self._report
        images = self._files.images
        for entry in entries:
            report.images += 1
            # NOTE: Looked at even without a picture: its files are counted,
            #   and its .partial files found.
            missing = self._missing_thumbnails(entry)
            length = _length(images / entry.file)
            if not length:
                self._found(
                    Problem(
                        Kind.NO_PICTURE,
                        f'{Files.IMAGES}/{entry.file}',
                        entry.image_id,
                        detail='missing' if length is None else 'empty',
                        file=entry.file,
                    )
                )
                continue
            report.pictures += 1
            if missing:
                self._found(
                    Problem(
                        Kind.THUMBNAILS,
                        f'{Files.THUMBNAILS}/{entry.file.removesuffix(".jpeg")}/',
                        entry.image_id,
                        detail=', '.join(_thumbnail(size) for size in missing),
                        file=entry.file,
                        entry=entry,
                        missing=tuple(missing),
                    )
                )
            animation = Files.animation_of(entry.file)
            if entry.animated and not (length := _length(images / animation)):
                self._found(
                    Problem(
                        Kind.ANIMATION,
                        f'{Files.IMAGES}/{animation}',
                        entry.image_id,
                        detail='missing' if length is None else 'empty',
                        file=entry.file,
                    )
                )

    def _missing_thumbnails(self, entry: Entry) -> list[Size]:
        """The JPEG thumbnails of the version that are missing or empty."""
        folder = self._files.thumbnails_of(entry.file)
        there: set[str] = set()
        try:
            for name, stat in self._files_in(folder):
                if _is_partial(name):
                    path = f'{_relative(folder)}/{name}'
                    partial = Problem(Kind.PARTIAL, path, bytes=stat.st_size)
                    self._unlisted(partial, stat)
                elif stat.st_size:
                    there.add(name)
        except (FileNotFoundError, NotADirectoryError):
            pass
        sizes = pixels.thumbnail_sizes(entry.size, self._min_thumb_size)
        return [size for size in sizes if _thumbnail(size) not in there]

    # The files no version of the index refers to

    def scan(self) -> None:
        for name, stat in self._files_in(self._files.images):
            path = f'{Files.IMAGES}/{name}'
            stem, _, suffix = name.rpartition('.')
            if _is_partial(name):
                self._unlisted(Problem(Kind.PARTIAL, path, bytes=stat.st_size), stat)
            elif suffix in ('jpeg', 'webp') and f'{stem}.jpeg' not in self._listed:
                orphan = Problem(
                    Kind.ORPHAN,
                    path,
                    name.partition('.')[0],
                    bytes=stat.st_size,
                    file=f'{stem}.jpeg',
                )
                self._unlisted(orphan, stat)
            # NOTE: Anything else is not asgilook's: it is left alone.
        with os.scandir(self._files.thumbnails) as folders:
            for folder in folders:
                file = f'{folder.name}.jpeg'
                if not folder.is_dir(follow_symlinks=False) or file in self._listed:
                    continue
                problem = Problem(
                    Kind.ORPHAN,
                    f'{Files.THUMBNAILS}/{folder.name}/',
                    folder.name.partition('.')[0],
                    file=file,
                )
                for _, stat in self._files_in(pathlib.Path(folder.path)):
                    problem.bytes += stat.st_size
                self._unlisted(problem, folder.stat(follow_symlinks=False))

    def _files_in(self, folder: pathlib.Path) -> Iterator[tuple[str, os.stat_result]]:
        """The regular files in ``folder``, with their stat; counted as seen."""
        with os.scandir(folder) as items:
            for item in items:
                if item.is_file(follow_symlinks=False):
                    stat = item.stat(follow_symlinks=False)
                    self._report.files += 1
                    self._report.bytes += stat.st_size
                    yield item.name, stat

    def _unlisted(self, problem: Problem, stat: os.stat_result) -> None:
        """An orphan or a partial: a problem if old enough, else left alone."""
        problem.age = time.time() - stat.st_mtime
        problem.detail = f'{output.size(problem.bytes)}, {output.age(problem.age)} old'
        if problem.age >= self._report.grace:
            self._found(problem)
        else:
            self._report.young.append(problem)

    def _found(self, problem: Problem) -> None:
        self._report.problems[problem.kind].append(problem)


def _length(path: pathlib.Path) -> int | None:
    """The size of the file at ``path``; None if there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _is_partial(name: str) -> bool:
    """Whether ``name`` is a write in progress (see :mod:`asgilook.storage.files`)."""
    return name.startswith('.') and name.endswith('.partial')


def _thumbnail(size: Size) -> str:
    width, height = size
    return f'{width}x{height}.jpeg'


def _relative(folder: pathlib.Path) -> str:
    return f'{folder.parent.name}/{folder.name}'

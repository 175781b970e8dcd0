"""``asgilook check``: a storage directory against its index, and its repair.

After a disk incident the files of a storage directory (see
:mod:`asgilook.storage.files`) and the index (see
:mod:`asgilook.storage.index`) may no longer agree. :func:`check` compares
them and reports, by :class:`Kind`:

* images of the index whose picture, the original, is missing or empty;
* images missing some of their JPEG thumbnails, or their animation;
* orphans: originals, animations and thumbnail folders that no image of the
  index refers to, left by an upload that died before its commit, or whose
  commit was not confirmed;
* stale ``.partial`` files: writes that never finished.

With ``repair`` it removes the images without their picture from the index
(and what is left of their files), renders the missing thumbnails again from
the original, and removes orphans and stale ``.partial`` files. When it
removed an image from the index, it makes the service's cached responses in
Redis (``ASGI_LOOK_REDIS_URL``) stale, as a deletion does, so that no cached
listing shows it. A missing
animation cannot be made again, as only the still JPEG of an upload is kept:
it is reported as a problem that stays.

It may run beside a service on the same directory and index. An upload
writes its files before the index lists it, and a write in progress is a
``.partial`` file, so unlisted files younger than the grace period are left
alone: they are neither problems nor removed. Every problem is looked up in
the index again just before it is reported or repaired, so that what the
service did meanwhile (an image replaced or deleted, an upload listed) is not
taken for damage; and an image is removed from the index only if its entry
still names the version that was checked.

It scales with the index, not with memory: the index is read a page at a
time, and the directories are streamed with ``os.scandir``. What it keeps is
the set of the original file names in the index (some 150 MB for a million
images) and the problems it found.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import math
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from asgilook.caching.cache import RedisCache
from asgilook.caching.cache import new_generation
from asgilook.caching.guard import FAILURES
from asgilook.commands import processes
from asgilook.commands.cli import DEFAULT_GRACE
from asgilook.config import Config
from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.pictures import pixels
from asgilook.storage.files import Files
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import Size
from asgilook.storage.index import open_index
from asgilook.storage.index.sqlite import SQLiteIndex

#: Entries read from the index at a time.
PAGE = 1000
#: How old an unlisted file must be before it is taken for an orphan (or a
#: stale ``.partial`` file), in seconds.
GRACE = DEFAULT_GRACE
#: Problems of each kind that the summary shows; ``--json`` has every one.
EXAMPLES = 5

#: Exit statuses of ``asgilook check``.
CONSISTENT = 0
PROBLEMS = 1
CANNOT_CHECK = 3

_UNLISTED = 'removed from the index'
_NO_ANIMATION = (
    'cannot be repaired: it was made from the upload, which is not kept '
    '(delete the image, and upload the picture again)'
)


class Kind(enum.StrEnum):
    """What is wrong."""

    #: An image of the index whose original is missing or empty.
    NO_PICTURE = 'no-picture'
    #: An image of the index missing some of its JPEG thumbnails.
    THUMBNAILS = 'thumbnails'
    #: An animated image of the index missing its animated rendition.
    ANIMATION = 'animation'
    #: A file in ``images/``, or a folder in ``thumbnails/``, of a version
    #: that the index does not list.
    ORPHAN = 'orphan'
    #: A write that never finished.
    PARTIAL = 'partial'


_HEADINGS = {
    Kind.NO_PICTURE: 'Images without their picture (the original is missing or empty)',
    Kind.THUMBNAILS: 'Images missing thumbnails',
    Kind.ANIMATION: 'Images missing their animation (it cannot be made again)',
    Kind.ORPHAN: 'Orphans (files and thumbnail folders no image refers to)',
    Kind.PARTIAL: 'Stale .partial files (writes that never finished)',
}


@dataclasses.dataclass
class Problem:
    """One thing found wrong, and what became of it."""

    kind: Kind
    #: The file (or folder, ending with ``/``), relative to the storage
    #: directory.
    path: str
    #: The image it belongs to; '' for a ``.partial`` file.
    image_id: str = ''
    #: The bytes it holds (a folder: its files').
    bytes: int = 0
    #: How long ago it was last changed, in seconds (orphans and partials).
    age: float | None = None
    #: What is wrong with it, in a few words.
    detail: str = ''
    #: What ``repair`` did, or why it could not.
    outcome: str = ''
    repaired: bool = False
    #: The original file of the version it belongs to.
    file: str = dataclasses.field(default='', repr=False)
    #: The entry of the image, and its missing thumbnails (THUMBNAILS).
    entry: Entry | None = dataclasses.field(default=None, repr=False)
    missing: tuple[Size, ...] = dataclasses.field(default=(), repr=False)

    def document(self) -> dict[str, Any]:
        """The problem, for ``--json``."""
        return {
            'path': self.path,
            'image_id': self.image_id or None,
            'bytes': self.bytes,
            'age': None if self.age is None else round(self.age),
            'detail': self.detail,
            'repaired': self.repaired,
            'outcome': self.outcome or None,
        }


@dataclasses.dataclass
class Report:
    """What a check found, and repaired."""

    storage: pathlib.Path
    #: The index it was checked against, in words.
    index: str
    repair: bool
    grace: float
    #: Images of the index checked.
    images: int = 0
    #: How many of them have their picture.
    pictures: int = 0
    #: Files seen in the storage directory, and their bytes.
    files: int = 0
    bytes: int = 0
    problems: dict[Kind, list[Problem]] = dataclasses.field(
        default_factory=lambda: {kind: [] for kind in Kind}
    )
    #: Unlisted files and partials younger than the grace period: left alone.
    young: list[Problem] = dataclasses.field(default_factory=list)
    #: Why nothing was repaired, if repairs were refused.
    refused: str = ''
    #: What became of the service's cache in Redis, if repairs changed the
    #: listings.
    cache: str = ''

    @property
    def found(self) -> int:
        return sum(len(problems) for problems in self.problems.values())

    @property
    def remaining(self) -> int:
        """The problems that were not repaired."""
        return sum(
            not problem.repaired
            for problems in self.problems.values()
            for problem in problems
        )

    @property
    def status(self) -> int:
        """The exit status: 0 if nothing is wrong (any more), else 1."""
        return PROBLEMS if self.remaining else CONSISTENT


class CannotCheck(Exception):
    """The check cannot be made; ``str(ex)`` says why."""


async def check(
    config: Config, *, repair: bool = False, grace: float = GRACE
) -> Report:
    """Check the storage directory of ``config`` against its index.

    Args:
        config: Where the storage directory and the index are.
        repair: Repair what can be repaired, too.
        grace: How old, in seconds, unlisted files must be to be orphans.

    Raises:
        CannotCheck: the storage directory has no SQLite index (and no
            database URL is given): it is not a storage directory.
        StorageUnavailable, StorageFull: the index cannot be used.
        OSError: the storage directory cannot be read.
    """
    root = pathlib.Path(os.fspath(config.storage_path))
    if config.database_url:
        index_name = f'PostgreSQL at {processes.redacted(config.database_url)}'
    elif (root / SQLiteIndex.FILE).is_file():
        index_name = f'SQLite, {SQLiteIndex.FILE}'
    else:
        # NOTE: Not made empty: then every file would be an orphan.
        raise CannotCheck(
            f'there is no index in {root} ({SQLiteIndex.FILE}): is it a storage '
            'directory? With a PostgreSQL index, give its --database-url.'
        )
    index = open_index(config)
    report = Report(root, index_name, repair, grace)
    try:
        await _Checker(config, index, report).run()
    finally:
        await index.close()
    if any(
        problem.outcome == _UNLISTED for problem in report.problems[Kind.NO_PICTURE]
    ):
        report.cache = await _stale_cache(config)
    return report


async def _stale_cache(config: Config) -> str:
    """Make every response the service cached in Redis stale; what became of it.

    NOTE: As a deletion does: a new generation (see
    :class:`asgilook.caching.cache.RedisCache`). A Redis that cannot be told is said,
    not an error: the cache only costs staleness, for its entries' lifetime.
    """
    where = processes.redacted(config.redis_host)
    redis = config.redis_from_url(config.redis_host)
    try:
        async with asyncio.timeout(config.redis_timeout):
            await redis.set(RedisCache.GENERATION_KEY, new_generation())
    except FAILURES as ex:
        return (
            f'The cache in Redis at {where} could not be told ({_reason(ex)}): '
            'its listings may show the images removed from the index for up to '
            f'{RedisCache.TTL // 60} minutes.'
        )
    finally:
        await redis.aclose()
    return f'The responses cached in Redis at {where} were made stale.'


class _Checker:
    def __init__(self, config: Config, index: Index, report: Report) -> None:
        self._min_thumb_size = config.min_thumb_size
        self._index = index
        self._report = report
        self._files = Files(report.storage)
        #: The original file of every version of the index seen.
        self._listed: set[str] = set()

    async def run(self) -> None:
        await self._read_index()
        await asyncio.to_thread(self._scan)
        report = self._report
        if report.repair and report.found and not report.pictures:
            report.refused = (
                'Nothing was repaired: no image of the index has its picture in '
                'this storage directory, so they may not belong together (see '
                '--storage and --database-url).'
            )
        for kind, problems in report.problems.items():
            kept = []
            for problem in problems:
                if not await self._still(problem):
                    continue
                kept.append(problem)
                if report.repair and not report.refused:
                    await self._repair(problem)
            report.problems[kind] = kept

    # The index, and the files of the versions it lists

    async def _read_index(self) -> None:
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

    def _scan(self) -> None:
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
        problem.detail = f'{_size(problem.bytes)}, {_age(problem.age)} old'
        if problem.age >= self._report.grace:
            self._found(problem)
        else:
            self._report.young.append(problem)

    def _found(self, problem: Problem) -> None:
        self._report.problems[problem.kind].append(problem)

    # Confirming and repairing

    async def _still(self, problem: Problem) -> bool:
        """Whether the problem is still one, now: the index may have changed."""
        if problem.kind is Kind.PARTIAL:
            return True
        entry = await self._index.get(problem.image_id)
        listed = entry is not None and entry.file == problem.file
        return listed != (problem.kind is Kind.ORPHAN)

    async def _repair(self, problem: Problem) -> None:
        match problem.kind:
            case Kind.NO_PICTURE:
                await self._unlist(problem)
            case Kind.THUMBNAILS:
                await self._render(problem)
            case Kind.ANIMATION:
                problem.outcome = _NO_ANIMATION
            case _:
                await self._remove(problem)

    async def _unlist(self, problem: Problem) -> None:
        file = problem.file
        try:
            await self._index.delete(problem.image_id, lambda entry: entry.file == file)
        except (ImageNotFound, DeleteForbidden):
            problem.outcome = 'left alone: the image was changed meanwhile'
        else:
            await asyncio.to_thread(self._files.discard_version, file)
            problem.outcome = _UNLISTED
        problem.repaired = True

    async def _render(self, problem: Problem) -> None:
        assert problem.entry is not None
        sizes = pixels.thumbnail_sizes(problem.entry.size, self._min_thumb_size)
        try:
            original = self._files.images / problem.file
            data = await asyncio.to_thread(original.read_bytes)
            rendered = await asyncio.to_thread(pixels.thumbnails, data, sizes)
            # NOTE: Only the missing ones: those there keep their bytes, which
            #   clients may have cached under the same entity tag.
            series = [
                (size, thumbnail)
                for size, thumbnail in zip(sizes, rendered, strict=True)
                if size in problem.missing
            ]
            await asyncio.to_thread(self._files.write_thumbnails, problem.file, series)
        except Exception as ex:
            # NOTE: A damaged original, say: the other repairs go on.
            problem.outcome = f'could not be rendered again: {_reason(ex)}'
            return
        problem.outcome = 'rendered again'
        problem.repaired = True

    async def _remove(self, problem: Problem) -> None:
        try:
            await asyncio.to_thread(_remove, self._report.storage / problem.path)
        except OSError as ex:
            problem.outcome = f'could not be removed: {_reason(ex)}'
            return
        problem.outcome = 'removed'
        problem.repaired = True


def _length(path: pathlib.Path) -> int | None:
    """The size of the file at ``path``; None if there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _remove(path: pathlib.Path) -> None:
    """Remove a file, or a folder with what is in it; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _is_partial(name: str) -> bool:
    """Whether ``name`` is a write in progress (see :mod:`asgilook.storage.files`)."""
    return name.startswith('.') and name.endswith('.partial')


def _thumbnail(size: Size) -> str:
    width, height = size
    return f'{width}x{height}.jpeg'


def _relative(folder: pathlib.Path) -> str:
    return f'{folder.parent.name}/{folder.name}'


def _reason(ex: Exception) -> str:
    if isinstance(ex, OSError) and ex.strerror:
        return ex.strerror
    return str(ex) or type(ex).__name__


def _size(count: int) -> str:
    """A number of bytes, in decimal units as ``asgilook import`` says them."""
    if count < 1000:
        return f'{count} B'
    exponent = min(int(math.log10(count)) // 3, 4)
    return f'{count / 1000**exponent:.1f} {"kMGT"[exponent - 1]}B'


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f'{max(seconds, 0) / 60:.0f} min'
    return f'{seconds / 3600:.1f} h'


def _count(number: int, noun: str) -> str:
    return f'{number} {noun}' if number == 1 else f'{number} {noun}s'


# The command


def summary(report: Report) -> str:
    """What a person reads: what was checked, found and repaired."""
    lines = [
        f'Checked {report.storage} against its index ({report.index}): '
        f'{_count(report.images, "image")}, {_count(report.files, "file")}, '
        f'{_size(report.bytes)}.'
    ]
    for kind, problems in report.problems.items():
        if problems:
            lines.append('')
            lines.extend(_listing(_HEADINGS[kind], problems))
    if report.young:
        lines.append('')
        lines.extend(
            _listing(
                f'Left alone (younger than --grace, {report.grace:g} s: maybe '
                'uploads in progress)',
                report.young,
            )
        )
    if report.cache:
        lines.append('')
        lines.append(report.cache)
    lines.append('')
    lines.append(_conclusion(report))
    return '\n'.join(lines) + '\n'


def _listing(heading: str, problems: list[Problem]) -> Iterator[str]:
    total = sum(problem.bytes for problem in problems)
    size = f', {_size(total)}' if total else ''
    yield f'{heading}: {len(problems)}{size}'
    for problem in problems[:EXAMPLES]:
        outcome = f'  -> {problem.outcome}' if problem.outcome else ''
        yield f'  {problem.path}  {problem.detail}{outcome}'
    if len(problems) > EXAMPLES:
        yield f'  ... and {len(problems) - EXAMPLES} more (--json lists them all)'


def _conclusion(report: Report) -> str:
    found = report.found
    problems = _count(found, 'problem')
    if not found:
        return 'No problems found.'
    if report.refused:
        return f'{problems} found. {report.refused}'
    if not report.repair:
        unrepairable = len(report.problems[Kind.ANIMATION])
        if unrepairable == found:
            return f'{problems} found, which --repair cannot repair.'
        but = ' (but not a missing animation)' if unrepairable else ''
        return f'{problems} found; nothing was changed. --repair repairs them{but}.'
    if report.remaining:
        return (
            f'Repaired {found - report.remaining} of {problems}; '
            f'{report.remaining} could not be (see above).'
        )
    return f'Repaired {problems}.'


def document(report: Report) -> dict[str, Any]:
    """What a program reads (``--json``): the report, with every problem."""
    return {
        'storage': str(report.storage),
        'index': report.index,
        'repair': report.repair,
        'grace': report.grace,
        'images': report.images,
        'files': report.files,
        'bytes': report.bytes,
        'problems': {
            str(kind): [problem.document() for problem in problems]
            for kind, problems in report.problems.items()
        },
        'left_alone': [problem.document() for problem in report.young],
        'refused': report.refused or None,
        'cache': report.cache or None,
        'found': report.found,
        'remaining': report.remaining,
        'status': report.status,
    }


def settings(storage: pathlib.Path, database_url: str | None) -> Config:
    """The settings of a service on ``storage`` with that index.

    Raises:
        CannotCheck: there is no such directory, or a setting is wrong.
    """
    if not storage.is_dir():
        raise CannotCheck(f'there is no storage directory {storage}')
    # NOTE: Config makes the directory ASGI_LOOK_STORAGE_PATH names (or its
    #   own default): it is told this one, which is there.
    name = 'ASGI_LOOK_STORAGE_PATH'
    previous = os.environ.get(name)
    os.environ[name] = str(storage)
    try:
        config = Config()
    except ValueError as ex:
        raise CannotCheck(str(ex)) from ex
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous
    config.database_url = database_url or None
    return config


def run(
    storage: pathlib.Path,
    *,
    database_url: str | None = None,
    repair: bool = False,
    grace: float = GRACE,
    as_json: bool = False,
) -> int:
    """Check (and repair) ``storage``, print what was found; the exit status."""
    try:
        config = settings(storage, database_url)
        report = asyncio.run(check(config, repair=repair, grace=grace))
    except (CannotCheck, StorageFull, StorageUnavailable, OSError) as ex:
        print(f'asgilook check: cannot check {storage}: {ex}', file=sys.stderr)
        return CANNOT_CHECK
    if as_json:
        print(json.dumps(document(report), indent=2))
    else:
        print(summary(report), end='')
    return report.status

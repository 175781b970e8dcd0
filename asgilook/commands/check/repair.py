"""The repairs of ``asgilook check --repair``, and the problems confirmed first.

:func:`settle` looks every problem found up in the index again, as a service
may have changed it meanwhile, drops those that are no longer problems, and
repairs the others if the report asks for it, through the store's
:class:`~asgilook.storage.objects.Objects`: an image without its picture is
removed from the index only if its entry still names the version that was
checked (and then its objects are discarded); missing and damaged
thumbnails are rendered again from the original; orphans and stale
``.partial`` files are removed. A damaged original or animation is never
removed: it cannot be made again, and the outcome says what to do.
:func:`stale_cache` then makes the service's cached responses in Redis
stale, if images were removed from the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib

from asgilook.caching.cache import RedisCache
from asgilook.caching.cache import new_generation
from asgilook.caching.guard import FAILURES
from asgilook.caching.guard import Unavailable
from asgilook.caching.keys import Keys
from asgilook.commands import processes
from asgilook.commands.check.reading import rendition
from asgilook.commands.check.report import KEPT_ORIGINAL
from asgilook.commands.check.report import ORIGINAL
from asgilook.commands.check.report import THUMBNAIL
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report
from asgilook.config import Config
from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.pictures import Size
from asgilook.pictures import pixels
from asgilook.pictures import renditions
from asgilook.storage.crypto import CURRENT_KEY_VARIABLE
from asgilook.storage.crypto import OLD_KEYS_VARIABLE
from asgilook.storage.index import Index
from asgilook.storage.objects import Objects

_UNLISTED = 'removed from the index'
_NO_ANIMATION = (
    'cannot be repaired: it was made from the upload, which is not kept '
    '(delete the image, and upload the picture again)'
)
_NO_KEPT_ORIGINAL = (
    'cannot be repaired: it was the upload itself (restore it from a backup; '
    'meanwhile its JPEG is served, and its "original" link is a 404)'
)
_DAMAGED_ORIGINAL = (
    'cannot be repaired: restore this object from a backup, or delete the '
    'image; if it was sealed with a key this service lacks, add that key to '
    f'{OLD_KEYS_VARIABLE}'
)
_DAMAGED_ANIMATION = (
    'cannot be repaired: restore this object from a backup, or delete the '
    'image and upload the picture again'
)
_REFUSED = (
    'Nothing was repaired: no image of the index has its picture in this '
    'storage directory, so they may not belong together (see --storage and '
    '--database-url).'
)


async def settle(
    config: Config, index: Index, objects: Objects, report: Report
) -> None:
    """Keep the problems of ``report`` that still are; repair them if it says so.

    Nothing is repaired if no image of the index has its picture: then the
    objects and the index may not belong together (or the keys are not the
    service's).
    """
    if report.repair and report.found and not report.pictures:
        report.refused = _REFUSED
        damaged = sum(p.role == ORIGINAL for p in report.problems[Kind.DAMAGED])
        if damaged:
            report.refused += (
                f' {damaged} of its originals {"fails" if damaged == 1 else "fail"} '
                'authentication: are the keys '
                f"the service's ({CURRENT_KEY_VARIABLE}, {OLD_KEYS_VARIABLE})?"
            )
    repairs = _Repairs(config, index, objects)
    for kind, problems in report.problems.items():
        kept = []
        for problem in problems:
            if not await repairs.still(problem):
                continue
            kept.append(problem)
            if report.repair and not report.refused:
                await repairs.repair(problem)
        report.problems[kind] = kept


async def stale_cache(config: Config, report: Report) -> None:
    """If the repairs removed images from the index, make the cache stale."""
    if any(
        problem.outcome.startswith(_UNLISTED)
        for problem in report.problems[Kind.NO_PICTURE]
    ):
        report.cache = await _stale_cache(config)


async def _stale_cache(config: Config) -> str:
    """Make every response the service cached in Redis stale; what became of it.

    NOTE: As a deletion does: a new generation (see
    :class:`asgilook.caching.cache.RedisCache`). A Redis that cannot be told is said,
    not an error: the cache only costs staleness, for its entries' lifetime.
    """
    where = processes.redacted(config.redis_host)
    keys = Keys.of(config)
    redis = config.redis_from_url(config.redis_host)
    try:
        # NOTE: The generation of this deployment only (its scope's).
        generation = keys.generation(await keys.scope())
        async with asyncio.timeout(config.redis_timeout):
            await redis.set(generation, new_generation())
    except (*FAILURES, Unavailable) as ex:
        return (
            f'The cache in Redis at {where} could not be told ({_reason(ex)}): '
            'its listings may show the images removed from the index for up to '
            f'{RedisCache.TTL // 60} minutes.'
        )
    finally:
        await redis.aclose()
    return f'The responses cached in Redis at {where} were made stale.'


class _Repairs:
    def __init__(self, config: Config, index: Index, objects: Objects) -> None:
        self._min_thumb_size = config.min_thumb_size
        self._index = index
        self._objects = objects
        #: The last series rendered: its version and format, and its bytes.
        self._rendered: tuple[str, str, dict[Size, bytes]] | None = None

    async def still(self, problem: Problem) -> bool:
        """Whether the problem is still one, now: the index may have changed."""
        if problem.kind is Kind.PARTIAL:
            return True
        entry = await self._index.get(problem.image_id)
        listed = entry is not None and entry.file == problem.file
        if listed:
            problem.entry = entry
        return listed != (problem.kind is Kind.ORPHAN)

    async def repair(self, problem: Problem) -> None:
        match problem.kind:
            case Kind.NO_PICTURE:
                await self._unlist(problem)
            case Kind.THUMBNAILS:
                await self._render(problem, problem.missing)
            case Kind.ANIMATION:
                problem.outcome = _NO_ANIMATION
            case Kind.KEPT_ORIGINAL:
                problem.outcome = _NO_KEPT_ORIGINAL
            case Kind.DAMAGED:
                await self._damaged(problem)
            case Kind.ORPHAN:
                await self._remove(problem)
            case _:
                await self._remove_partial(problem)

    async def _unlist(self, problem: Problem) -> None:
        file = problem.file
        problem.repaired = True
        try:
            await self._index.delete(problem.image_id, lambda entry: entry.file == file)
        except (ImageNotFound, DeleteForbidden):
            problem.outcome = 'left alone: the image was changed meanwhile'
            return
        problem.outcome = _UNLISTED
        try:
            await self._objects.discard_version(file)
        except (StorageFull, StorageUnavailable) as ex:
            # NOTE: Unlisted all the same: a later check finds them as orphans.
            problem.outcome += (
                f'; its other objects could not be removed ({_reason(ex)})'
            )

    async def _damaged(self, problem: Problem) -> None:
        if problem.role in (ORIGINAL, KEPT_ORIGINAL):
            problem.outcome = _DAMAGED_ORIGINAL
            return
        if problem.role != THUMBNAIL:
            problem.outcome = _DAMAGED_ANIMATION
            return
        found = rendition(problem.path)
        assert found is not None and problem.entry is not None
        size, name = found
        if size in pixels.thumbnail_sizes(problem.entry.size, self._min_thumb_size):
            await self._render(problem, (size,), name)
            return
        # NOTE: Of a size no longer in the series (the smallest side was
        #   changed): never served, nor made again.
        problem.blobs = self._objects.renditions
        await self._remove(problem, 'removed: its size is not in the series')

    async def _render(
        self, problem: Problem, sizes: tuple[Size, ...], name: str = renditions.JPEG
    ) -> None:
        """Render the thumbnails of ``sizes`` (of its series) in format ``name``
        again, and store them over what is there."""
        assert problem.entry is not None
        try:
            series = await self._series(problem.file, problem.entry.size, name)
            # NOTE: Only those asked for: those there keep their bytes, which
            #   clients may have cached under the same entity tag.
            thumbnails = [(size, series[size]) for size in sizes]
            await self._objects.write_thumbnails(problem.file, thumbnails, name)
        except Exception as ex:
            # NOTE: A damaged original, say: the other repairs go on.
            problem.outcome = f'could not be rendered again: {_reason(ex)}'
            return
        problem.outcome = 'rendered again'
        problem.repaired = True

    async def _series(self, file: str, size: Size, name: str) -> dict[Size, bytes]:
        """The thumbnail series of a version in format ``name``, by size."""
        if self._rendered is not None and self._rendered[:2] == (file, name):
            return self._rendered[2]
        original = await self._objects.read_original(file)
        if original is None:
            raise FileNotFoundError(f'its original {file} is missing')
        sizes = pixels.thumbnail_sizes(size, self._min_thumb_size)
        if name == renditions.JPEG:
            series = await asyncio.to_thread(pixels.thumbnails, original, sizes)
        else:
            series = await asyncio.to_thread(renditions.render, original, sizes, name)
        rendered = dict(zip(sizes, series, strict=True))
        self._rendered = (file, name, rendered)
        return rendered

    async def _remove(self, problem: Problem, outcome: str = 'removed') -> None:
        assert problem.blobs is not None
        try:
            if problem.path.endswith('/'):
                await problem.blobs.delete_prefix(problem.path)
            else:
                await problem.blobs.delete([problem.path])
        except (StorageFull, StorageUnavailable) as ex:
            problem.outcome = f'could not be removed: {_reason(ex)}'
            return
        problem.outcome = outcome
        problem.repaired = True

    async def _remove_partial(self, problem: Problem) -> None:
        assert problem.local is not None
        try:
            await asyncio.to_thread(_unlink, problem.local)
        except OSError as ex:
            problem.outcome = f'could not be removed: {_reason(ex)}'
            return
        problem.outcome = 'removed'
        problem.repaired = True


def _unlink(path: pathlib.Path) -> None:
    """Remove a file; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _reason(ex: BaseException) -> str:
    """Why, in a few words: the error of the file system behind it, if any."""
    cause = ex.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(ex, OSError) and ex.strerror:
        return ex.strerror
    return str(ex) or type(ex).__name__

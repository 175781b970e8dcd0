"""The repairs of ``asgilook check --repair``, and the problems confirmed first.

:func:`settle` looks every problem found up in the index again, as a service
may have changed it meanwhile, drops those that are no longer problems, and
repairs the others if the report asks for it: an image without its picture
is removed from the index only if its entry still names the version that was
checked. :func:`stale_cache` then makes the service's cached responses in
Redis stale, if images were removed from the index.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil

from asgilook.caching.cache import RedisCache
from asgilook.caching.cache import new_generation
from asgilook.caching.guard import FAILURES
from asgilook.commands import processes
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report
from asgilook.config import Config
from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.pictures import pixels
from asgilook.storage.files import Files
from asgilook.storage.index import Index

_UNLISTED = 'removed from the index'
_NO_ANIMATION = (
    'cannot be repaired: it was made from the upload, which is not kept '
    '(delete the image, and upload the picture again)'
)


async def settle(config: Config, index: Index, report: Report) -> None:
    """Keep the problems of ``report`` that still are; repair them if it says so.

    Nothing is repaired if no image of the index has its picture: then the
    storage directory and the index may not belong together.
    """
    if report.repair and report.found and not report.pictures:
        report.refused = (
            'Nothing was repaired: no image of the index has its picture in '
            'this storage directory, so they may not belong together (see '
            '--storage and --database-url).'
        )
    repairs = _Repairs(config, index, report)
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
        problem.outcome == _UNLISTED for problem in report.problems[Kind.NO_PICTURE]
    ):
        report.cache = await _stale_cache(config)


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


class _Repairs:
    def __init__(self, config: Config, index: Index, report: Report) -> None:
        self._min_thumb_size = config.min_thumb_size
        self._index = index
        self._storage = report.storage
        self._files = Files(report.storage)

    async def still(self, problem: Problem) -> bool:
        """Whether the problem is still one, now: the index may have changed."""
        if problem.kind is Kind.PARTIAL:
            return True
        entry = await self._index.get(problem.image_id)
        listed = entry is not None and entry.file == problem.file
        return listed != (problem.kind is Kind.ORPHAN)

    async def repair(self, problem: Problem) -> None:
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
            await asyncio.to_thread(_remove, self._storage / problem.path)
        except OSError as ex:
            problem.outcome = f'could not be removed: {_reason(ex)}'
            return
        problem.outcome = 'removed'
        problem.repaired = True


def _remove(path: pathlib.Path) -> None:
    """Remove a file, or a folder with what is in it; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _reason(ex: Exception) -> str:
    if isinstance(ex, OSError) and ex.strerror:
        return ex.strerror
    return str(ex) or type(ex).__name__

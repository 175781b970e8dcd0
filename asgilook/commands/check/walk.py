"""The walk of ``asgilook check``: the index a page at a time, then the objects.

:func:`find` reads the index (newest first, :data:`PAGE` entries at a time)
and reads the objects of each version it lists, by key, where they are kept
(:class:`~asgilook.storage.objects.Objects`: the originals, and the
renditions, in one backend or two): its original, its JPEG thumbnails, its
animation and the original kept as uploaded, each its header and size, or
all of it with ``verify`` (see :mod:`~asgilook.commands.check.reading`). Then
:mod:`~asgilook.commands.check.listing` lists the objects, a page at a time,
for those no listed version refers to. What it keeps is the set of the
original file names in the index, and the problems it found, in the report.
"""

from __future__ import annotations

from asgilook.commands.check.listing import partials
from asgilook.commands.check.listing import scan
from asgilook.commands.check.reading import bounded
from asgilook.commands.check.reading import damaged
from asgilook.commands.check.reading import look
from asgilook.commands.check.report import ANIMATION
from asgilook.commands.check.report import KEPT_ORIGINAL
from asgilook.commands.check.report import ORIGINAL
from asgilook.commands.check.report import THUMBNAIL
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.commands.check.report import Report
from asgilook.config import Config
from asgilook.pictures import Size
from asgilook.pictures import pixels
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.objects import Objects
from asgilook.storage.objects import animation_key
from asgilook.storage.objects import kept_key
from asgilook.storage.objects import original_key
from asgilook.storage.objects import thumbnail_key
from asgilook.storage.objects import thumbnails_prefix

#: Entries read from the index at a time.
PAGE = 1000


async def find(config: Config, index: Index, objects: Objects, report: Report) -> None:
    """Put in ``report`` what is wrong with the objects, by ``index``.

    Raises:
        StorageUnavailable, StorageFull: the index or a backend cannot be used.
        OSError: a folder of a local directory cannot be read.
    """
    # NOTE: First: a local directory without its folders fails at once.
    await partials(objects, report)
    walk = _Walk(config, index, objects, report)
    await walk.read_index()
    await scan(objects, walk.listed, report)


class _Walk:
    def __init__(
        self, config: Config, index: Index, objects: Objects, report: Report
    ) -> None:
        self._min_thumb_size = config.min_thumb_size
        self._index = index
        self._objects = objects
        self._report = report
        #: The original file of every version of the index seen.
        self.listed: set[str] = set()

    async def read_index(self) -> None:
        # NOTE: Newest first: an image replaced while this reads becomes the
        #   newest, and a page after it then starts again from the top
        #   (versions seen are skipped) rather than ending early. Uploads
        #   listed meanwhile are left out; their objects are young.
        after = None
        while True:
            entries, _ = await self._index.page(
                PAGE, after, newest_first=True, everyone=True
            )
            fresh = [entry for entry in entries if entry.file not in self.listed]
            self.listed.update(entry.file for entry in fresh)
            self._report.images += len(fresh)
            # NOTE: Read a few versions at a time, and reported in the order
            #   of the index, whichever is read first.
            for problems in await bounded(self._version(entry) for entry in fresh):
                for problem in problems:
                    self._report.add(problem)
            if len(entries) < PAGE:
                return
            after = entries[-1].image_id

    async def _version(self, entry: Entry) -> list[Problem]:
        """The problems of one version of the index."""
        file = entry.file
        key = original_key(file)
        original = await look(self._objects.originals, key, self._report.verify)
        if original.damage:
            # NOTE: Its thumbnails could not be rendered again anyway: the
            #   next check, once it is restored, looks at them.
            return [damaged(key, ORIGINAL, entry.image_id, file, original.damage)]
        if not original.size:
            detail = 'missing' if original.size is None else 'empty'
            return [
                Problem(Kind.NO_PICTURE, key, entry.image_id, detail=detail, file=file)
            ]
        self._report.pictures += 1
        problems = await self._thumbnails(entry)
        if entry.animated:
            problems.extend(await self._animation(entry))
        if entry.original:
            problems.extend(await self._kept(entry))
        return problems

    async def _thumbnails(self, entry: Entry) -> list[Problem]:
        """Its JPEG thumbnails that are missing or empty, and those damaged."""
        renditions = self._objects.renditions
        sizes = pixels.thumbnail_sizes(entry.size, self._min_thumb_size)
        missing: list[Size] = []
        problems = []
        for size in sizes:
            key = thumbnail_key(entry.file, size)
            thumbnail = await look(renditions, key, self._report.verify)
            if thumbnail.damage:
                problems.append(
                    damaged(
                        key, THUMBNAIL, entry.image_id, entry.file, thumbnail.damage
                    )
                )
            elif not thumbnail.size:
                missing.append(size)
        if missing:
            problem = Problem(
                Kind.THUMBNAILS,
                thumbnails_prefix(entry.file),
                entry.image_id,
                detail=', '.join(_thumbnail(size) for size in missing),
                file=entry.file,
                entry=entry,
                missing=tuple(missing),
            )
            problems.insert(0, problem)
        return problems

    async def _animation(self, entry: Entry) -> list[Problem]:
        key = animation_key(entry.file)
        return await self._beside(entry, key, self._objects.renditions, Kind.ANIMATION)

    async def _kept(self, entry: Entry) -> list[Problem]:
        key = kept_key(entry.file)
        return await self._beside(
            entry, key, self._objects.originals, Kind.KEPT_ORIGINAL
        )

    async def _beside(
        self, entry: Entry, key: str, blobs: SealedBlobs, kind: Kind
    ) -> list[Problem]:
        """The problem of an object that cannot be made again, if it has one:
        the animation, or the original kept as uploaded."""
        found = await look(blobs, key, self._report.verify)
        if found.damage:
            role = ANIMATION if kind is Kind.ANIMATION else KEPT_ORIGINAL
            return [damaged(key, role, entry.image_id, entry.file, found.damage)]
        if found.size:
            return []
        detail = 'missing' if found.size is None else 'empty'
        return [Problem(kind, key, entry.image_id, detail=detail, file=entry.file)]


def _thumbnail(size: Size) -> str:
    width, height = size
    return f'{width}x{height}.jpeg'

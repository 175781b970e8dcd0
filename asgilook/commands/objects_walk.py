"""What ``asgilook migrate`` and ``asgilook rekey`` share: a walk of every object.

Both commands work on the storage that the settings name, as ``asgilook
serve`` reads them (:func:`settings`, :func:`open_objects`): the backend of the
originals and, if the renditions are kept apart, theirs, each walked once.
Each is listed a page at a time under ``images/`` and ``thumbnails/``, never
every name at once; :class:`Walk` does the command's work on ``jobs``
objects at a time as they are listed, and counts the outcome of each in a
:class:`Tally`. An object that cannot be done is counted as failed, with
why, and the walk goes on; a backend that fails :data:`STOP_AFTER` times in a
row (full, unreachable) stops it.

:mod:`~asgilook.commands.objects_output` is where the commands speak: the
progress bar, the summary or the JSON document, and the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
from collections.abc import AsyncGenerator
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import cast

from rich.filesize import decimal
from rich.progress import Progress

from asgilook.config import Config
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import StoreError
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.objects import IMAGES
from asgilook.storage.objects import THUMBNAILS
from asgilook.storage.objects import Objects

# The exit statuses of both commands; 2 is argparse's own for a usage error.
OK = 0
FAILED = 1
CANNOT_START = 2
INTERRUPTED = 130

#: Where the objects of a storage are; nothing else of it is walked.
PREFIXES = (f'{IMAGES}/', f'{THUMBNAILS}/')
#: The failures kept with their reasons, for the summary and ``--json``.
KEPT = 100
#: Objects failed in a row by their backend, after which a walk stops.
STOP_AFTER = 10
FAILED_OUTCOME = 'failed'

#: A command's work on one object of a backend: its outcome, and its bytes.
Handler = Callable[[SealedBlobs, Listed], Awaitable[tuple[str, int]]]


class CannotStart(Exception):
    """The command cannot start; ``str(ex)`` says why."""


class Failed(Exception):
    """One object could not be done; ``str(ex)`` says why.

    ``backend``: a backend failed (full, unreachable), not only the object.
    """

    def __init__(self, reason: str, backend: bool = False) -> None:
        super().__init__(reason)
        self.backend = backend


@contextlib.contextmanager
def failing(doing: str = '') -> Iterator[None]:
    """Turn an error of the store into :class:`Failed`, saying what was done."""
    try:
        yield
    except StoreError as ex:
        backend = isinstance(ex, StorageFull | StorageUnavailable)
        raise Failed(f'{doing}: {ex}' if doing else str(ex), backend) from ex


def is_rendition(key: str) -> bool:
    """Whether the object of ``key`` is a thumbnail or an animation."""
    return key.startswith(PREFIXES[1]) or key.endswith('.webp')


# The storage


def settings(storage: pathlib.Path, environ: Mapping[str, str]) -> Config:
    """The settings of ``asgilook serve`` on ``storage``, in ``environ`` (read only).

    Raises:
        CannotStart: the objects are kept in the storage directory (no
            ``ASGI_LOOK_STORAGE_URL``), and there is none; a setting is wrong.
    """
    if not environ.get('ASGI_LOOK_STORAGE_URL') and not storage.is_dir():
        raise CannotStart(f'there is no storage directory {storage}')
    try:
        return Config.from_environ({**environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)})
    except ValueError as ex:
        raise CannotStart(str(ex)) from ex


def open_objects(config: Config) -> Objects:
    """The backends of the settings; CannotStart for a bad URL."""
    try:
        return Objects.of(config)
    except ValueError as ex:
        raise CannotStart(str(ex)) from ex


def backends(objects: Objects) -> list[SealedBlobs]:
    """The backends of a storage, each once."""
    return (
        [objects.originals, objects.renditions]
        if objects.apart
        else [objects.originals]
    )


def location(blobs: SealedBlobs) -> str:
    """Where a backend's objects are, ``/`` at the end, to compare places."""
    if isinstance(blobs.inner, LocalBlobs):
        return os.path.realpath(blobs.inner.root).rstrip('/') + '/'
    return blobs.url.rstrip('/') + '/'


def _listing(blobs: SealedBlobs, prefix: str) -> AsyncGenerator[Listed, None]:
    # NOTE: Every backend's list() is an async generator: it can be closed.
    return cast('AsyncGenerator[Listed, None]', blobs.list(prefix))


async def readable(blobs: SealedBlobs) -> None:
    """Check that a backend's objects can be listed; CannotStart if not."""
    if isinstance(blobs.inner, LocalBlobs) and not blobs.inner.root.is_dir():
        raise CannotStart(f'there is no directory {blobs.url}')
    try:
        async with contextlib.aclosing(_listing(blobs, PREFIXES[0])) as listing:
            await anext(listing, None)
    except (StorageFull, StorageUnavailable) as ex:
        raise CannotStart(f'{blobs.url} cannot be listed: {ex}') from ex


async def writable(blobs: SealedBlobs) -> None:
    """Check that objects can be written to a backend; CannotStart if not."""
    try:
        await blobs.probe()
    except (StorageFull, StorageUnavailable) as ex:
        raise CannotStart(f'{blobs.url} cannot be written: {ex}') from ex


# The walk


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """A backend to walk, and which of its objects to do."""

    blobs: SealedBlobs
    keep: Callable[[str], bool]


def _everything(key: str) -> bool:
    return True


def _original(key: str) -> bool:
    return not is_rendition(key)


def sources(objects: Objects, by_kind: bool = False) -> list[Source]:
    """The backends of a storage to walk, each once.

    With ``by_kind``, only the objects that the service reads there: the
    originals of the originals' backend, the renditions of the renditions'
    (a rendition left with the originals before they were put apart is not).
    """
    if not objects.apart:
        return [Source(objects.originals, _everything)]
    if not by_kind:
        return [Source(blobs, _everything) for blobs in backends(objects)]
    return [
        Source(objects.originals, _original),
        Source(objects.renditions, is_rendition),
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """An object that failed, where, and why."""

    key: str
    where: str
    reason: str


class Tally:
    """What became of the objects: how many, and their bytes, by outcome."""

    def __init__(self, outcomes: Sequence[str]) -> None:
        self.outcomes = (*outcomes, FAILED_OUTCOME)
        self.objects = dict.fromkeys(self.outcomes, 0)
        self.bytes = dict.fromkeys(self.outcomes, 0)
        #: The first :data:`KEPT` failures.
        self.failures: list[Failure] = []
        #: Why the walk stopped before its end, if it did.
        self.stopped: str | None = None
        self.interrupted = False
        self._in_a_row = 0

    @property
    def failed(self) -> int:
        return self.objects[FAILED_OUTCOME]

    @property
    def settled(self) -> int:
        return sum(self.objects.values())

    def done(self, outcome: str, size: int) -> None:
        self.objects[outcome] += 1
        self.bytes[outcome] += size
        self._in_a_row = 0

    def fail(self, listed: Listed, where: str, failure: Failed) -> None:
        self.objects[FAILED_OUTCOME] += 1
        self.bytes[FAILED_OUTCOME] += listed.size
        if len(self.failures) < KEPT:
            self.failures.append(Failure(listed.key, where, str(failure)))
        self._in_a_row = self._in_a_row + 1 if failure.backend else 0
        if self._in_a_row >= STOP_AFTER:
            self.stop(f'{STOP_AFTER} objects failed in a row, the last: {failure}')

    def stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason

    @property
    def status(self) -> int:
        if self.interrupted:
            return INTERRUPTED
        return FAILED if self.failed or self.stopped else OK

    def detail(self) -> str:
        """The counts so far, for the progress bar."""
        return ', '.join(f'{n} {name}' for name, n in self.objects.items() if n)


class Walk:
    """Do ``handle`` to every object of ``sources``, ``jobs`` at a time."""

    def __init__(
        self,
        sources: Sequence[Source],
        handle: Handler,
        jobs: int,
        tally: Tally,
        progress: Progress,
        verb: str,
    ) -> None:
        self._sources = sources
        self._handle = handle
        self._jobs = jobs
        self._tally = tally
        self._progress = progress
        self._task = progress.add_task(verb, total=None, size=decimal(0), detail='')

    async def run(self) -> None:
        """Walk to the end, or until the walk stops; then wait for the work."""
        slots = asyncio.Semaphore(self._jobs)
        with self._progress:
            async with asyncio.TaskGroup() as group:
                for source in self._sources:
                    for prefix in PREFIXES:
                        if self._tally.stopped is None:
                            await self._start(group, slots, source, prefix)

    async def _start(
        self,
        group: asyncio.TaskGroup,
        slots: asyncio.Semaphore,
        source: Source,
        prefix: str,
    ) -> None:
        """Start the work on each object under ``prefix``, as a slot is free."""
        try:
            async with contextlib.aclosing(_listing(source.blobs, prefix)) as listing:
                async for listed in listing:
                    if not source.keep(listed.key):
                        continue
                    await slots.acquire()
                    if self._tally.stopped is not None:
                        slots.release()
                        return
                    group.create_task(self._one(source.blobs, listed, slots))
        except (StorageFull, StorageUnavailable) as ex:
            self._tally.stop(
                f'the listing of {source.blobs.url} ({prefix}) failed: {ex}'
            )

    async def _one(
        self, blobs: SealedBlobs, listed: Listed, slots: asyncio.Semaphore
    ) -> None:
        try:
            outcome, size = await self._handle(blobs, listed)
        except Failed as failure:
            self._tally.fail(listed, blobs.url, failure)
        else:
            self._tally.done(outcome, size)
        finally:
            slots.release()
        self._progress.update(
            self._task,
            completed=self._tally.settled,
            size=decimal(sum(self._tally.bytes.values())),
            detail=self._tally.detail(),
        )

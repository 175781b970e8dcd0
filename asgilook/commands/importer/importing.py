"""The work of ``asgilook import``: pictures into a target, ``jobs`` at a time.

An :class:`Importer` opens the target, skips the pictures whose content the
manifest (or this run) has seen, imports the others, records each in the
manifest, counts what became of each in the tally, and shows its progress.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn
from rich.progress import DownloadColumn
from rich.progress import Progress
from rich.progress import TaskID
from rich.progress import TextColumn
from rich.progress import TimeRemainingColumn
from rich.progress import TransferSpeedColumn

from asgilook.commands.importer.folders import Picture
from asgilook.commands.importer.folders import Tally
from asgilook.commands.importer.folders import read
from asgilook.commands.importer.folders import reason
from asgilook.commands.importer.manifest import Manifest
from asgilook.commands.importer.target import Refused
from asgilook.commands.importer.target import Target
from asgilook.commands.importer.target import TargetUnavailable


def progress_bar(console: Console) -> Progress:
    """The progress bar of an import: files and bytes, speed, time left."""
    return Progress(
        TextColumn('{task.description}', markup=False),
        BarColumn(),
        TextColumn('{task.fields[files]}', markup=False),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


class Importer:
    """Import pictures into a target, ``jobs`` at a time, and count what happens."""

    def __init__(
        self,
        open_target: Callable[[], Awaitable[Target]],
        manifest: Manifest,
        jobs: int,
        tally: Tally,
    ) -> None:
        self._open_target = open_target
        self._manifest = manifest
        self._jobs = jobs
        self.tally = tally
        #: Why the import stopped before the end, if it did.
        self.stopped: str | None = None
        #: False until it ends, or stops (but not if it is interrupted).
        self.finished = False
        self.warnings: list[str] = []
        # The content of every file imported, before or in this run.
        self._imported = set(manifest.digests)

    async def run(self, pictures: list[Picture], progress: Progress) -> None:
        try:
            target = await self._open_target()
        except TargetUnavailable as ex:
            self.stopped = str(ex)
            self.finished = True
            return
        try:
            with progress:
                await self._run(target, pictures, progress)
        finally:
            await target.close()
            if target.warning is not None:
                self.warnings.append(target.warning)
        self.finished = True

    async def _run(
        self, target: Target, pictures: list[Picture], progress: Progress
    ) -> None:
        total = sum(picture.size for picture in pictures)
        plural = '' if len(pictures) == 1 else 's'
        progress.console.print(
            f'Importing {len(pictures)} picture{plural} '
            f'({decimal(total)}) into {target.name}'
        )
        task = progress.add_task(
            'Importing', total=total, files=f'0/{len(pictures)} files'
        )
        remaining = iter(pictures)
        await asyncio.gather(
            *(
                self._work(target, remaining, progress, task, len(pictures))
                for _ in range(self._jobs)
            )
        )

    async def _work(
        self,
        target: Target,
        pictures: Iterator[Picture],
        progress: Progress,
        task: TaskID,
        count: int,
    ) -> None:
        for picture in pictures:
            if self.stopped is not None:
                break
            try:
                await self._one(target, picture)
                self.tally.settled += 1
            except TargetUnavailable as ex:
                self.stopped = self.stopped or str(ex)
            progress.update(
                task,
                advance=picture.size,
                files=f'{self.tally.settled}/{count} files',
            )

    async def _one(self, target: Target, picture: Picture) -> None:
        name = str(picture.path)
        if target.max_bytes is not None and picture.size > target.max_bytes:
            self.tally.refused.append(
                (
                    name,
                    f'It is larger than the service accepts: at most '
                    f'{target.max_bytes:,} bytes.',
                )
            )
            return
        try:
            data, digest = await asyncio.to_thread(read, picture.path)
        except OSError as ex:
            self.tally.unreadable.append((name, f'It cannot be read: {reason(ex)}.'))
            return
        if digest in self._imported:
            self.tally.already += 1
            return
        # NOTE: Claimed before the upload: the same picture twice in one run
        #   is imported once.
        self._imported.add(digest)
        try:
            image_id, token = await target.upload(picture.path, data)
        except Refused as ex:
            self._imported.discard(digest)
            self.tally.refused.append((name, str(ex)))
            return
        entry = {
            'sha256': digest,
            'id': image_id,
            'file': name,
            'bytes': len(data),
            'delete_token': token,
            'imported': datetime.datetime.now(datetime.UTC).isoformat(),
        }
        await asyncio.to_thread(self._manifest.record, entry)
        self.tally.imported += 1
        self.tally.imported_bytes += len(data)

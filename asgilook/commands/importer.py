"""``asgilook import``: folders of pictures into a service, or a storage directory.

Pictures are sent to a running service with ``POST /images``, or stored with
:class:`asgilook.storage.store.Store` in a storage directory, a few at a time, with a
progress bar and a summary of what was refused and why. A manifest records
what was imported (the SHA-256 of each file, the id and delete token it got),
so that running the same import again goes on where the last one ended.
:mod:`asgilook.commands.cli` parses the command line and calls :func:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import mimetypes
import os
import pathlib
import re
import stat
import sys
import urllib.parse
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from typing import Protocol

import httpx
import rich.filesize
from rich.console import Console
from rich.progress import BarColumn
from rich.progress import DownloadColumn
from rich.progress import Progress
from rich.progress import TaskID
from rich.progress import TextColumn
from rich.progress import TimeRemainingColumn
from rich.progress import TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from asgilook.caching.cache import RedisCache
from asgilook.caching.guard import Unavailable
from asgilook.commands import processes
from asgilook.commands import serve
from asgilook.commands.cli import DEFAULT_JOBS
from asgilook.commands.cli import DEFAULT_URL
from asgilook.commands.cli import STORAGE_MANIFEST
from asgilook.config import Config
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import StoreError
from asgilook.http.events import CREATED
from asgilook.http.events import Events
from asgilook.storage.store import Store

# Exit statuses of `asgilook import`; 2 is argparse's own, for a usage error.
OK = 0
INCOMPLETE = 1
UNAVAILABLE = 3
INTERRUPTED = 130

#: What is a picture, by its name's extension (in any case).
PICTURES = frozenset(
    {'.jpg', '.jpeg', '.png', '.gif', '.webp', '.bmp', '.tif', '.tiff'}
    # HEIC, as iPhones name it (.heif too), and AVIF.
    | {'.heic', '.heif', '.avif'}
)


def run(
    folders: Sequence[pathlib.Path],
    *,
    url: str = DEFAULT_URL,
    storage: pathlib.Path | None = None,
    jobs: int = DEFAULT_JOBS,
    manifest: pathlib.Path | None = None,
) -> int:
    """Import every picture under ``folders``; return the exit status.

    To the service at ``url``, or straight into ``storage``; ``jobs`` at a
    time; the manifest at ``manifest``, or the default one.
    """
    # NOTE: Lines are never cut: messages and paths stay whole for grep. On
    #   a terminal, the table of refused files fits its width.
    errors = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    output = Console(
        highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000
    )
    tally = _Tally()
    pictures = _find(folders, tally)
    opener: Callable[[], Awaitable[_Target]]
    if storage is not None:
        opener = functools.partial(_Storage.open, storage, jobs)
    else:
        opener = functools.partial(_Service.open, url, jobs)
    path = manifest or _default_manifest(storage, url)
    try:
        kept = _Manifest.open(path)
    except OSError as ex:
        errors.print(f'asgilook import: cannot use the manifest {path}: {_reason(ex)}')
        return UNAVAILABLE

    importer = _Importer(opener, kept, jobs, tally)
    progress = Progress(
        TextColumn('{task.description}', markup=False),
        BarColumn(),
        TextColumn('{task.fields[files]}', markup=False),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
    )
    # NOTE: Ctrl-C ends the run, not the command: the summary says what was
    #   done, and the manifest keeps it.
    with kept, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(importer.run(pictures, progress))
    return _conclude(importer, len(pictures), path, output, errors)


def _conclude(
    importer: _Importer,
    pictures: int,
    manifest: pathlib.Path,
    output: Console,
    errors: Console,
) -> int:
    """Say what became of the pictures, and why the import stopped; the status."""
    tally = importer.tally
    _summarize(output, tally, pictures, manifest)
    for warning in importer.warnings:
        errors.print(f'asgilook import: {warning}')
    if importer.stopped is not None:
        errors.print(f'asgilook import: {importer.stopped}')
        return UNAVAILABLE
    if not importer.finished:
        errors.print(
            'asgilook import: interrupted; run the same command again to go on.'
        )
        return INTERRUPTED
    return INCOMPLETE if tally.refused or tally.unreadable else OK


def _default_manifest(storage: pathlib.Path | None, url: str) -> pathlib.Path:
    """The manifest of a storage directory, or of a service (by host and port)."""
    if storage is not None:
        return storage / STORAGE_MANIFEST
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == 'https' else 80)
    host = re.sub(r'[^\w.-]', '_', parts.hostname or '')
    state = processes.xdg_home('XDG_STATE_HOME', '.local/state', os.environ)
    return state / 'asgilook' / 'imports' / f'{host}_{port}.jsonl'


@dataclasses.dataclass(frozen=True)
class _Picture:
    path: pathlib.Path
    size: int


@dataclasses.dataclass
class _Tally:
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


def _find(roots: Sequence[pathlib.Path], tally: _Tally) -> list[_Picture]:
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
            pictures.append(_Picture(path, size))
    return pictures


def _files(root: pathlib.Path, tally: _Tally) -> Iterator[pathlib.Path]:
    if not root.is_dir():
        yield root
        return

    def unreadable(ex: OSError) -> None:
        tally.unreadable.append(
            (str(ex.filename), f'The folder cannot be read: {_reason(ex)}.')
        )

    # NOTE: Links to folders are not followed: one could lead back up.
    for folder, subfolders, names in os.walk(root, onerror=unreadable):
        subfolders.sort()
        for name in sorted(names):
            yield pathlib.Path(folder, name)


def _read(path: pathlib.Path) -> tuple[bytes, str]:
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


def _reason(ex: BaseException) -> str:
    """Why an operating-system call failed, without the ``[Errno N]`` prefix."""
    return getattr(ex, 'strerror', None) or str(ex)


class _Manifest:
    """What was imported: one JSON line per file, found again by its SHA-256.

    Lines are appended as pictures are imported, so that an import that is
    interrupted (or crashes) keeps what it did.
    """

    def __init__(self, fd: int, digests: set[str]) -> None:
        self._fd = fd
        #: The SHA-256 of every file imported before.
        self.digests = digests

    @classmethod
    def open(cls, path: pathlib.Path) -> _Manifest:
        """Read the manifest at ``path`` and open it to append; OSError if not."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = b''
        # NOTE: Only its owner may read it: it holds the delete tokens.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if data and not data.endswith(b'\n'):
            # A line cut off by a crash: the next one starts on a line of its own.
            os.write(fd, b'\n')
        digests = set()
        for line in data.splitlines():
            try:
                digests.add(str(json.loads(line)['sha256']))
            except (ValueError, KeyError, TypeError):
                # NOTE: A line cut off by a crash, or not one of ours.
                continue
        return cls(fd, digests)

    def record(self, entry: dict[str, Any]) -> None:
        """Append an entry; in one write, so that lines never interleave."""
        os.write(self._fd, json.dumps(entry).encode() + b'\n')

    def __enter__(self) -> _Manifest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.close(self._fd)


class _Refused(Exception):
    """The service (or the store) refused a picture; ``str(ex)`` says why."""


class _Unavailable(Exception):
    """The service cannot be reached, or the storage used; nothing more can be."""


class _Target(Protocol):
    """Where pictures are imported: a running service, or a storage directory."""

    #: What it is, for people.
    name: str
    #: The largest picture it takes, if that is known here.
    max_bytes: int | None
    #: Something that did not go right, though the pictures were imported.
    warning: str | None

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        """Import a picture; return its id and delete token.

        Raises:
            _Refused: it is not taken, for the reason given.
            _Unavailable: the target cannot be used any more.
        """

    async def close(self) -> None:
        """Let go of the connections, threads and files it holds."""


class _Service:
    """A running service, over HTTP: ``POST /images``."""

    # Seconds an upload may take; uploads wait for each other on the service.
    TIMEOUT = 120.0
    CONNECT_TIMEOUT = 10.0
    # The service says its own limit, when it refuses a picture.
    max_bytes: int | None = None
    warning: str | None = None

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.name = url
        self._client = client

    @classmethod
    async def open(cls, url: str, jobs: int) -> _Service:
        """Connect, and check that an asgilook service answers at ``url``.

        Raises:
            _Unavailable: it cannot be reached, or is not asgilook.
        """
        client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(cls.TIMEOUT, connect=cls.CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=jobs),
            # NOTE: The service may answer MessagePack; this reads JSON.
            headers={'Accept': 'application/json'},
        )
        try:
            await cls._check(client, url)
        except BaseException:
            await client.aclose()
            raise
        return cls(url, client)

    @staticmethod
    async def _check(client: httpx.AsyncClient, url: str) -> None:
        try:
            response = await client.get('/images', params={'limit': 1})
        except httpx.TransportError as ex:
            raise _Unavailable(
                f'cannot reach the service at {url} ({_failure(ex)}). Is it '
                'running? Start it with `asgilook serve`, or give its address '
                'with --url.'
            ) from ex
        if response.status_code != 200:
            raise _Unavailable(
                f'{url} does not answer as an asgilook service: GET /images is '
                f'"{response.status_code} {response.reason_phrase}". Give the '
                "service's address with --url."
            )

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        content_type = mimetypes.guess_type(path.name)[0] or 'application/octet-stream'
        try:
            response = await self._client.post(
                '/images', content=data, headers={'Content-Type': content_type}
            )
        except httpx.TransportError as ex:
            raise _Unavailable(
                f'lost the service at {self.name} ({_failure(ex)}); run the same '
                'command again to go on once it is back.'
            ) from ex
        if response.status_code != 201:
            raise _Refused(_description(response))
        document = response.json()
        return str(document['id']), str(document['delete_token'])

    async def close(self) -> None:
        await self._client.aclose()


def _failure(ex: httpx.TransportError) -> str:
    """Why a request failed, in words."""
    if isinstance(ex, httpx.TimeoutException):
        return 'it did not answer in time'
    # NOTE: httpx says "All connection attempts failed"; the operating
    #   system's own words are in the error that this one comes from.
    cause: BaseException | None = ex
    while cause is not None:
        number = getattr(cause, 'errno', None)
        if isinstance(number, int):
            return os.strerror(number)
        cause = cause.__cause__ or cause.__context__
    return str(ex) or type(ex).__name__


def _description(response: httpx.Response) -> str:
    """The words of an error answer: its JSON ``description``, or its status."""
    try:
        error = response.json()
        return str(error['description'])
    except (ValueError, KeyError, TypeError):
        return (
            f'The service answered "{response.status_code} {response.reason_phrase}".'
        )


class _Storage:
    """A storage directory, written in-process by a :class:`~asgilook.store.Store`.

    A service on the directory sees each picture at its next request: the
    index is shared. Its cache is told too, when its Redis is known (a
    private Redis of ``asgilook serve``, or ``ASGI_LOOK_REDIS_URL``), as the
    service itself would: cached listings go stale, and open galleries are
    sent the picture.
    """

    warning: str | None = None

    def __init__(
        self,
        path: pathlib.Path,
        config: Config,
        store: Store,
        redis_url: str | None,
    ) -> None:
        self._path = path
        self._config = config
        self._store = store
        self.max_bytes: int | None = config.max_upload_bytes
        self.name = f'the storage directory {path}'
        self._cache: RedisCache | None = None
        self._events: Events | None = None
        # Whether an invalidation did not reach Redis (it is owed, then).
        self._missed = False
        self._quiet = logging.NullHandler()
        if redis_url:
            config.redis_host = redis_url
            self.name += f', cached in the Redis at {processes.redacted(redis_url)}'
            self._cache = RedisCache(config)
            self._events = Events(config, self._cache.redis, self._cache.guard)
            # NOTE: The guard's warnings are for a server's log ("serving
            #   without the cache"); close() says what it means here.
            logging.getLogger(RedisCache.__module__).addHandler(self._quiet)

    @classmethod
    async def open(cls, path: pathlib.Path, jobs: int) -> _Storage:
        """Open the store in ``path``, making the directory if it is missing.

        Raises:
            _Unavailable: the directory (or the settings) cannot be used.
        """
        redis_url = serve.serving_redis(path) or os.environ.get('ASGI_LOOK_REDIS_URL')
        try:
            config = _config(path)
            # As a service with as many Pillow threads as uploads at a time.
            config.image_workers = jobs
            return cls(path, config, Store(config), redis_url)
        except (OSError, ValueError) as ex:
            raise _Unavailable(
                f'cannot store pictures in {path}: {_reason(ex)}.'
            ) from ex

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        image_id = str(self._config.uuid_generator())
        try:
            image, token = await self._store.save(image_id, data)
        except (StorageFull, StorageUnavailable) as ex:
            raise _Unavailable(f'cannot store pictures in {self._path}: {ex}') from ex
        except StoreError as ex:
            raise _Refused(str(ex)) from ex
        if self._cache is not None and self._events is not None:
            # NOTE: As a service's upload does: every cached listing is stale,
            #   and open galleries are sent the picture.
            self._missed |= not await self._cache.invalidate()
            await self._events.publish(CREATED, image.serialize())
        return image_id, token

    async def close(self) -> None:
        await self._store.process_shutdown(None, None)
        if self._cache is None:
            return
        try:
            if self._missed:
                # Once more: the guard makes the owed invalidation first.
                await self._cache.guard.call(self._cache.redis.ping, probe=True)
        except Unavailable:
            self.warning = (
                f'the Redis at {processes.redacted(self._config.redis_host)} does '
                'not answer: a service on this storage directory may list what '
                'it had cached, without the new pictures, for up to an hour.'
            )
        finally:
            await self._cache.process_shutdown(None, None)
            logging.getLogger(RedisCache.__module__).removeHandler(self._quiet)


def _config(storage: pathlib.Path) -> Config:
    """The settings a service on ``storage`` would have.

    NOTE: Config makes the directory that ``ASGI_LOOK_STORAGE_PATH`` names,
    or its own default: it is told this one, so that it makes no other.
    """
    name = 'ASGI_LOOK_STORAGE_PATH'
    previous = os.environ.get(name)
    os.environ[name] = str(storage)
    try:
        return Config()
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


class _Importer:
    """Import pictures into a target, ``jobs`` at a time, and count what happens."""

    def __init__(
        self,
        open_target: Callable[[], Awaitable[_Target]],
        manifest: _Manifest,
        jobs: int,
        tally: _Tally,
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

    async def run(self, pictures: list[_Picture], progress: Progress) -> None:
        try:
            target = await self._open_target()
        except _Unavailable as ex:
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
        self, target: _Target, pictures: list[_Picture], progress: Progress
    ) -> None:
        total = sum(picture.size for picture in pictures)
        plural = '' if len(pictures) == 1 else 's'
        progress.console.print(
            f'Importing {len(pictures)} picture{plural} '
            f'({rich.filesize.decimal(total)}) into {target.name}'
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
        target: _Target,
        pictures: Iterator[_Picture],
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
            except _Unavailable as ex:
                self.stopped = self.stopped or str(ex)
            progress.update(
                task,
                advance=picture.size,
                files=f'{self.tally.settled}/{count} files',
            )

    async def _one(self, target: _Target, picture: _Picture) -> None:
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
            data, digest = await asyncio.to_thread(_read, picture.path)
        except OSError as ex:
            self.tally.unreadable.append((name, f'It cannot be read: {_reason(ex)}.'))
            return
        if digest in self._imported:
            self.tally.already += 1
            return
        # NOTE: Claimed before the upload: the same picture twice in one run
        #   is imported once.
        self._imported.add(digest)
        try:
            image_id, token = await target.upload(picture.path, data)
        except _Refused as ex:
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


def _summarize(
    console: Console, tally: _Tally, pictures: int, manifest: pathlib.Path
) -> None:
    counts = Table.grid(padding=(0, 1))
    counts.add_column(justify='right')
    counts.add_column()
    size = rich.filesize.decimal(tally.imported_bytes)
    counts.add_row(str(tally.imported), f'imported ({size})')
    counts.add_row(str(tally.already), 'already imported (skipped)')
    counts.add_row(str(tally.not_pictures), 'not pictures (skipped)')
    counts.add_row(str(len(tally.refused)), 'refused')
    counts.add_row(str(len(tally.unreadable)), 'could not be read')
    not_tried = pictures - tally.settled
    if not_tried:
        counts.add_row(str(not_tried), 'not tried')
    console.print(counts)
    failed = tally.refused + tally.unreadable
    if failed:
        table = Table('File', 'Why it was not imported', title='Not imported')
        for name, why in failed:
            table.add_row(Text(name), Text(why))
        console.print(table)
    console.print(f'The manifest of what was imported: {manifest}')

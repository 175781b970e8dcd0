"""``asgilook migrate --to-database``: the index moved to another database.

The index that the settings name (the SQLite file ``index.sqlite3`` in the
storage directory, or the PostgreSQL database of ``ASGI_LOOK_DATABASE_URL``)
is copied into another one, entry by entry, with everything an entry holds
(see :class:`~asgilook.storage.index.Entry`): its id, its version's file, its
size, its time of upload, the hash of its delete token, its placeholder and
whether it is animated, its uploaded file's name, its visibility, its owner,
its bytes and the format of its kept original, in upload order; every entry,
whoever may see it. The upload keys go along (hashes, quotas, times of making
and revoking; a key the destination has already is left alone), and so does
the secret that signs URLs. URLs, signed ones too, ``ETag``\\ s, the order of
the listing and the delete tokens handed out all stay true. The objects are
not touched: the index names them by key.

Only the :class:`~asgilook.storage.index.Index` interface is used: the source
is read a page at a time (:meth:`~asgilook.storage.index.Index.page`), and
each page is added to the destination with
:meth:`~asgilook.storage.index.Index.adopt`, which keeps every field; each
batch is one transaction, under a name of its own. A run that stops half-way
leaves the destination holding the source's first entries, in order: a
second run finds them there (a *prefix* of the source), and goes on after
them. A destination that holds anything else is refused.

At the end both sides are read again, and every entry must be equal, in the
same order, and the counts too. The source must not change meanwhile (the
service stopped, or at least taking no uploads and deletions): its count and
newest entry are compared before and after, and a change fails the run.

A SQLite index moved out is renamed ``index.sqlite3.migrated`` (after a
checkpoint, so no ``-wal`` file holds part of it): a service configured with
a database refuses to start beside a SQLite index that still holds pictures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import sqlite3
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_walk import CANNOT_START
from asgilook.commands.objects_walk import FAILED
from asgilook.commands.objects_walk import INTERRUPTED
from asgilook.commands.objects_walk import OK
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import settings
from asgilook.commands.processes import redacted
from asgilook.config import Config
from asgilook.errors import StoreError
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import KeyExists
from asgilook.storage.index.sqlite import SQLiteIndex

#: Entries read and adopted at a time.
DEFAULT_BATCH = 1000
#: What a SQLite index moved out is renamed to.
MIGRATED = f'{SQLiteIndex.FILE}.migrated'


class Failed(Exception):
    """The move did not end well; ``str(ex)`` says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Place:
    """Where an index is: a SQLite file in a directory, or a PostgreSQL database."""

    kind: str
    #: For people: the SQLite file, or the URL without its password.
    where: str
    root: pathlib.Path | None = None
    url: str | None = None

    def open(self) -> Index:
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            return SQLiteIndex(self.root)
        from asgilook.storage.index.postgres import PostgresIndex

        assert self.url is not None
        return PostgresIndex(self.url)


def sqlite_place(root: pathlib.Path) -> Place:
    return Place('SQLite', str(root / SQLiteIndex.FILE), root=root)


def database(url: str, storage: pathlib.Path) -> Place:
    """The index that ``--to-database`` names.

    ``postgresql://...`` (or ``postgres://``): that database. ``sqlite``:
    ``index.sqlite3`` in the storage directory; ``sqlite:///DIR``: in the
    directory ``DIR`` (a path to an ``index.sqlite3`` in it will do too).

    Raises:
        ValueError: it is neither.
    """
    scheme, _, rest = url.partition(':')
    if scheme.lower() in ('postgresql', 'postgres') and rest.startswith('//'):
        return Place('PostgreSQL', redacted(url), url=url)
    if scheme.lower() == 'sqlite' and rest in ('', '//'):
        return sqlite_place(storage)
    if scheme.lower() == 'sqlite' and rest.startswith('///'):
        path = pathlib.Path(rest[2:])
        return sqlite_place(path.parent if path.name == SQLiteIndex.FILE else path)
    raise ValueError(
        f'{url!r} names no database: give postgresql://USER@HOST/DATABASE, '
        "sqlite (the storage directory's index.sqlite3) or sqlite:///DIRECTORY"
    )


def configured(config: Config) -> Place:
    """The index that the settings name, as ``asgilook serve`` opens it."""
    if config.database_url:
        return Place(
            'PostgreSQL', redacted(config.database_url), url=config.database_url
        )
    return sqlite_place(pathlib.Path(os.fspath(config.storage_path)))


def same(here: Place, there: Place) -> bool:
    if here.root is not None and there.root is not None:
        return os.path.realpath(here.root) == os.path.realpath(there.root)
    return here.url is not None and here.url == there.url


# Reading two indexes side by side


class Pager:
    """An index read in upload order, ``batch`` entries at a time."""

    def __init__(self, index: Index, batch: int, after: str | None = None) -> None:
        self.index = index
        self.batch = batch
        self.after = after

    async def next(self) -> list[Entry]:
        """The next page; empty at the end."""
        entries, _ = await self.index.page(self.batch, self.after, everyone=True)
        if entries:
            self.after = entries[-1].image_id
        return entries


async def agree(
    source: Index, target: Index, batch: int, whole: bool
) -> tuple[int, str | None]:
    """How many entries ``target`` holds, each equal to the source's at its
    place; and the id of the last of them.

    With ``whole``, the source must have no more entries than that either.

    Raises:
        Failed: an entry differs, or one side has more (the message says which).
    """
    ours, theirs = Pager(source, batch), Pager(target, batch)
    count = 0
    while True:
        last = theirs.after
        page, expected = await theirs.next(), await ours.next()
        for number, (mine, found) in enumerate(zip(expected, page, strict=False)):
            if mine != found:
                raise Failed(
                    f'entry {count + number + 1} differs: {found.image_id} is '
                    f'there where the source has {mine.image_id}'
                )
        if len(page) > len(expected):
            raise Failed(f'it holds more entries than the source, {count + len(page)}')
        count += len(page)
        if len(page) == len(expected) == 0:
            return count, last
        if len(page) < len(expected):
            if whole:
                raise Failed(f'it holds {count} entries only, fewer than the source')
            return count, theirs.after


async def fingerprint(index: Index) -> tuple[int, list[Entry]]:
    """What changes with any change of an index: its count and newest entry."""
    newest, _ = await index.page(1, newest_first=True, everyone=True)
    return await index.count(), newest


async def copy_keys(source: Index, target: Index) -> int:
    """Add the upload keys of ``source`` that ``target`` lacks; how many.

    Each keeps its hash, quota, rate, role and times; its ``used`` is what
    ``target`` holds of its pictures. A key that ``target`` has already (by
    name, or by secret) is left as it is there.
    """
    there = {key.name for key in await target.keys()}
    added = 0
    for key in await source.keys():
        if key.name not in there:
            with contextlib.suppress(KeyExists):
                await target.add_key(key)
                added += 1
    return added


# The move


@dataclasses.dataclass
class Moved:
    """What a move did."""

    source: Place
    target: Place
    #: Entries found at the destination from an earlier run, and copied now.
    there: int = 0
    copied: int = 0
    #: Upload keys added to the destination.
    keys: int = 0
    verified: bool = False
    #: Where the SQLite index moved out was renamed to.
    retired: pathlib.Path | None = None


async def move(moved: Moved, batch: int) -> None:
    """Copy the entries the destination lacks, then compare both sides.

    Raises:
        CannotStart: the destination holds entries that are not the
            source's first ones.
        Failed: the copy does not read back as the source, or the source
            changed meanwhile.
        StoreError: an index cannot be used.
    """
    source, target = moved.source.open(), moved.target.open()
    try:
        before = await fingerprint(source)
        try:
            moved.there, after = await agree(source, target, batch, whole=False)
        except Failed as ex:
            raise CannotStart(
                f'{moved.target.where} is not empty, and not an earlier run of '
                f'this move ({ex}): give an empty database'
            ) from ex
        run = uuid.uuid4().hex[:12]
        pager = Pager(source, batch, after)
        while entries := await pager.next():
            await target.adopt(f'asgilook migrate {run} {pager.after}', entries)
            moved.copied += len(entries)
        moved.keys = await copy_keys(source, target)
        await target.set_url_secret(await source.url_secret())
        problem = None
        try:
            count, _ = await agree(source, target, batch, whole=True)
        except Failed as ex:
            problem = ex
        if await fingerprint(source) != before:
            raise Failed(
                f'{moved.source.where} changed during the move: stop the '
                'service (no uploads, no deletions) and run it again'
            )
        if problem is not None:
            raise problem
        if await target.count() != count:
            raise Failed(f'{moved.target.where} counts another number of images')
        moved.verified = True
    finally:
        await source.close()
        await target.close()


def retire(root: pathlib.Path) -> pathlib.Path:
    """Rename a SQLite index moved out to ``index.sqlite3.migrated``.

    Raises:
        Failed: it is still open elsewhere (a service runs on it).
    """
    path = root / SQLiteIndex.FILE
    connection = sqlite3.connect(path, timeout=1, isolation_level=None)
    try:
        # NOTE: Every change into the file itself, then out of WAL mode: the
        #   renamed file needs no -wal beside it. Only possible when no
        #   other connection has it open.
        connection.execute('PRAGMA wal_checkpoint(TRUNCATE)')
        connection.execute('PRAGMA journal_mode = DELETE')
    except sqlite3.OperationalError as ex:
        raise Failed(
            f'{path} is still in use ({ex}): stop the service that has it open, '
            'and run the same command again'
        ) from ex
    finally:
        connection.close()
    renamed = root / MIGRATED
    number = 1
    while renamed.exists():
        number += 1
        renamed = root / f'{MIGRATED}.{number}'
    for suffix in ('', '-wal', '-shm'):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f'{path}{suffix}', f'{renamed}{suffix}')
    return renamed


# The command


def _next_step(moved: Moved) -> str:
    if moved.target.url is not None:
        return (
            f'serve with ASGI_LOOK_DATABASE_URL={moved.target.where} (its password too)'
        )
    return 'serve without ASGI_LOOK_DATABASE_URL, with --storage ' + str(
        moved.target.root
    )


def _report(moved: Moved, status: int, problem: str | None, as_json: bool) -> int:
    if as_json:
        document: dict[str, Any] = {
            'command': 'migrate',
            'from': {'kind': moved.source.kind, 'where': moved.source.where},
            'to': {'kind': moved.target.kind, 'where': moved.target.where},
            'copied': moved.copied,
            'already_there': moved.there,
            'keys_copied': moved.keys,
            'verified': moved.verified,
            'renamed_to': None if moved.retired is None else str(moved.retired),
            'problem': problem,
            'status': status,
        }
        print(json.dumps(document, indent=2))
        return status
    print(f'The index from {moved.source.kind}, {moved.source.where}')
    print(f'to {moved.target.kind}, {moved.target.where}:')
    print(f'  {moved.copied} entries copied, {moved.there} there from an earlier run')
    if moved.keys:
        print(f'  {moved.keys} upload keys copied, and the secret of signed URLs')
    if moved.verified:
        total = moved.copied + moved.there
        print(f'  verified: {total} entries, equal on both sides, in upload order')
    if moved.retired is not None:
        print(f'  {moved.source.where} renamed to {moved.retired.name}')
    print(f'Failed: {problem}' if problem else f'Done: {_next_step(moved)}.')
    return status


def run(
    to_database: str,
    *,
    storage: pathlib.Path | None = None,
    batch: int = DEFAULT_BATCH,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Move the index that ``environ`` names to ``to_database``; the exit status."""
    storage = storage or default_storage(environ)
    try:
        config = settings(storage, environ)
        source = configured(config)
        target = database(to_database, storage)
        if source.root is not None and not (source.root / SQLiteIndex.FILE).is_file():
            raise CannotStart(f'there is no index in {storage}: nothing to move')
        if same(source, target):
            raise CannotStart(f'the index is in {target.where} already')
    except (CannotStart, ValueError) as ex:
        print(f'asgilook migrate: cannot start: {ex}', file=sys.stderr)
        return CANNOT_START
    moved = Moved(source, target)
    try:
        asyncio.run(move(moved, batch))
        if source.root is not None:
            moved.retired = retire(source.root)
    except CannotStart as ex:
        print(f'asgilook migrate: cannot start: {ex}', file=sys.stderr)
        return CANNOT_START
    except KeyboardInterrupt:
        return _report(
            moved, INTERRUPTED, 'interrupted: run it again to go on', as_json
        )
    except (Failed, StoreError) as ex:
        return _report(
            moved, FAILED, f'{str(ex).rstrip(".")}. Run it again to go on.', as_json
        )
    return _report(moved, OK, None, as_json)

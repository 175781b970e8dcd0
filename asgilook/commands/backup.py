"""``asgilook backup DEST``: a consistent copy of the whole service, while it serves.

What the settings name, as ``asgilook serve`` reads them (the storage
directory, ``ASGI_LOOK_STORAGE_URL``, ``ASGI_LOOK_RENDITIONS_URL``,
``ASGI_LOOK_DATABASE_URL``), is copied into ``DEST``, which is itself a
storage directory in the service's local layout: ``index.sqlite3`` beside
``images/`` and ``thumbnails/``. ``asgilook serve --storage DEST`` serves it
as it is, and ``asgilook check --storage DEST`` finds it consistent; ``asgilook
restore DEST`` puts it back, into any index and storage.

In this order, so that every picture the backup lists has all its objects:

1. The import manifest (``imported.jsonl``), before the index: every line of
   it is then about a picture the index already lists.
2. The index, as one snapshot taken by the database itself: SQLite's online
   backup of ``index.sqlite3``; for PostgreSQL, every row read in one
   ``REPEATABLE READ`` transaction (one snapshot, however many uploads commit
   meanwhile; the :class:`~asgilook.storage.index.Index` interface reads a
   page per statement, which is not one). Every picture, whoever may see it,
   the upload keys (their hashes only: the index never holds a key) and the
   secret of signed URLs, so that the URLs it signed stay good.
3. The objects of every version the snapshot lists, as they are stored (see
   :mod:`~asgilook.commands.backup_copy`). An object is written before the
   index lists its version, so each was there when the snapshot was taken;
   one that is gone now was deleted (or replaced) since, and that version
   is left out of the backup's index.
4. The new index takes the place of the last backup's, in one rename; then
   the objects it no longer names are removed.

A second run into the same ``DEST`` copies only what is new, and removes
what is gone: until its index is renamed into place, ``DEST`` is the last
backup, whole. ``DEST`` must be empty, or a backup (it holds
``asgilook-backup.json``): what else is in a directory is not removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from asgilook.commands import index_move
from asgilook.commands.backup_copy import PAGE
from asgilook.commands.backup_copy import Copied
from asgilook.commands.backup_copy import Counts
from asgilook.commands.backup_copy import Raw
from asgilook.commands.backup_copy import copy_all
from asgilook.commands.backup_copy import settle_sqlite
from asgilook.commands.backup_copy import snapshot_sqlite
from asgilook.commands.backup_copy import write_private
from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import STORAGE_MANIFEST
from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_walk import CANNOT_START
from asgilook.commands.objects_walk import FAILED
from asgilook.commands.objects_walk import INTERRUPTED
from asgilook.commands.objects_walk import OK
from asgilook.commands.objects_walk import PREFIXES
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import backends
from asgilook.commands.objects_walk import location
from asgilook.commands.objects_walk import open_objects
from asgilook.commands.objects_walk import settings
from asgilook.config import Config
from asgilook.errors import StorageUnavailable
from asgilook.errors import StoreError
from asgilook.pictures import pixels
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import UploadKey
from asgilook.storage.index import open_index
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.objects import IMAGES
from asgilook.storage.objects import THUMBNAILS
from asgilook.storage.objects import thumbnail_key

#: What marks a directory as a backup, and says what it holds.
MARKER = 'asgilook-backup.json'
#: Where a run builds the next index, inside ``DEST``.
PARTIAL = '.backup-partial'

_ROWS = """
SELECT id, file, width, height, modified, token_hash, placeholder, animated,
       name, visibility, owner, bytes, original
FROM images ORDER BY seq
"""
_KEYS = """
SELECT name, key_hash, quota, rate, admin, created, revoked FROM upload_keys
ORDER BY seq
"""


@dataclasses.dataclass
class Backup:
    """What a backup did."""

    dest: pathlib.Path
    index: index_move.Place
    sealed: bool
    objects: Counts = dataclasses.field(default_factory=Counts)
    images: int = 0
    #: The ids of the versions left out: deleted or replaced during the copy.
    left_out: list[str] = dataclasses.field(default_factory=list)
    removed: int = 0
    manifest: bool = False


def destination(dest: pathlib.Path, config: Config) -> None:
    """Refuse a ``DEST`` that is not empty nor a backup, or is in the storage.

    Raises:
        CannotStart: what is wrong with it.
    """
    if dest.exists() and not dest.is_dir():
        raise CannotStart(f'{dest} is not a directory')
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise CannotStart(
            f'{dest} is neither empty nor a backup (it has no {MARKER}): give '
            'an empty or new directory'
        )
    here = os.path.realpath(dest).rstrip('/') + '/'
    for blobs in backends(open_objects(config)):
        root = location(blobs)
        if here == root or here.startswith(tuple(root + p for p in PREFIXES)):
            raise CannotStart(f'{dest} is where the service keeps its pictures')


# The index


def _entry(row: Any) -> Entry:
    (image_id, file, width, height, modified, token_hash, placeholder, animated,
     name, visibility, owner, size, original) = row  # fmt: skip
    return Entry(image_id, file, (width, height), modified, token_hash, placeholder,
                 animated, name, visibility, owner, size, original)  # fmt: skip


async def _postgres_snapshot(url: str, snapshot: Index) -> None:
    """Every row of the PostgreSQL index, read in one snapshot, into ``snapshot``.

    The pictures, then the upload keys, then the secret of signed URLs.
    """
    import asyncpg

    from asgilook.storage.index.postgres import create_schema

    try:
        connection = await asyncpg.connect(url, timeout=30)
    except (OSError, asyncpg.PostgresError) as ex:
        raise StorageUnavailable(f'The database cannot be reached ({ex}).') from ex
    try:
        # NOTE: An index of an older asgilook is brought up to date first, as
        #   the service would: the snapshot reads the columns of this one. A
        #   database that holds no index is left alone (and cannot be read).
        if await connection.fetchval("SELECT to_regclass('asgilook_schema')"):
            await create_schema(connection)
        async with connection.transaction(isolation='repeatable_read', readonly=True):
            entries: list[Entry] = []
            async for row in connection.cursor(_ROWS):
                entries.append(_entry(row))
                if len(entries) == PAGE:
                    await snapshot.adopt(f'backup {entries[0].image_id}', entries)
                    entries = []
            await snapshot.adopt('backup, the last', entries)
            for row in await connection.fetch(_KEYS):
                await snapshot.add_key(UploadKey(*row.values()))
            await snapshot.set_url_secret(
                await connection.fetchval('SELECT secret FROM url_secret')
            )
    except asyncpg.PostgresError as ex:
        raise StorageUnavailable(f'The index cannot be read ({ex}).') from ex
    finally:
        await connection.close()


async def snapshot(config: Config, partial: pathlib.Path) -> None:
    """The index of ``config``, as of now, into ``partial/index.sqlite3``."""
    if config.database_url:
        index = SQLiteIndex(partial)
        try:
            await _postgres_snapshot(config.database_url, index)
        finally:
            await index.close()
        return
    source = pathlib.Path(os.fspath(config.storage_path)) / SQLiteIndex.FILE
    await asyncio.to_thread(snapshot_sqlite, source, partial / SQLiteIndex.FILE)


# The objects, and the files of DEST


async def _gone(live: Index, entry: Entry) -> bool:
    """Whether the version is no longer the image's current one."""
    current = await live.get(entry.image_id)
    return current is None or current.file != entry.file


def _start(config: Config, backup: Backup) -> pathlib.Path:
    """A fresh scratch directory in DEST, with the manifest copied into it."""
    dest = backup.dest
    partial = dest / PARTIAL
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # NOTE: As a storage directory has them, even with nothing in them.
    (dest / IMAGES).mkdir(exist_ok=True)
    (dest / THUMBNAILS).mkdir(exist_ok=True)
    if not (dest / MARKER).exists():
        # NOTE: First, so that a first run that stops is a backup to go on.
        _mark(backup, finished=False)
    manifest = pathlib.Path(os.fspath(config.storage_path)) / STORAGE_MANIFEST
    if manifest.is_file():
        write_private(partial / STORAGE_MANIFEST, manifest.read_bytes())
        backup.manifest = True
    return partial


def _mark(backup: Backup, finished: bool) -> None:
    document = {
        'format': 1,
        'finished': finished,
        'when': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'index': {'kind': backup.index.kind, 'where': backup.index.where},
        'images': backup.images,
        'sealed_objects_need_the_keys': backup.sealed,
    }
    write_private(backup.dest / MARKER, json.dumps(document, indent=2).encode())


def _swap(partial: pathlib.Path, dest: pathlib.Path) -> None:
    """Put the new index (and manifest) in the place of the last backup's."""
    index = dest / SQLiteIndex.FILE
    settle_sqlite(index)
    os.replace(partial / SQLiteIndex.FILE, index)
    manifest = partial / STORAGE_MANIFEST
    if manifest.exists():
        os.replace(manifest, dest / STORAGE_MANIFEST)
    else:
        (dest / STORAGE_MANIFEST).unlink(missing_ok=True)


def _prune(dest: pathlib.Path, files: set[str]) -> int:
    """Remove the objects that no file of ``files`` names, and half-written ones."""
    removed = 0
    for path in sorted((dest / IMAGES).glob('*')):
        stem, _, suffix = path.name.rpartition('.')
        # NOTE: An animation (.webp) and a kept original (.original) are
        #   named after their version's original (.jpeg).
        version = f'{stem}.jpeg' if suffix in ('webp', 'original') else path.name
        # NOTE: A half-written file (.NAME.HEX.partial) is never one of them.
        if version not in files:
            path.unlink()
            removed += 1
    for folder in sorted((dest / THUMBNAILS).glob('*')):
        if f'{folder.name}.jpeg' in files:
            for path in folder.glob('.*.partial'):
                path.unlink()
        else:
            removed += sum(1 for _ in folder.iterdir())
            shutil.rmtree(folder)
    return removed


async def back_up(config: Config, backup: Backup, jobs: int, verify: bool) -> None:
    """Copy the index, then the objects it names, into DEST; swap; prune."""
    partial = await asyncio.to_thread(_start, config, backup)
    await snapshot(config, partial)
    copy, live = SQLiteIndex(partial), open_index(config)
    source, target = Raw.of(open_objects(config)), Raw.directory(backup.dest)
    left_out: list[Entry] = []

    async def copied(version: Copied) -> None:
        entry = version.entry
        sizes = pixels.thumbnail_sizes(entry.size, config.min_thumb_size)
        series = {thumbnail_key(entry.file, size) for size in sizes}
        if not version.whole or (
            not series <= version.thumbnails and await _gone(live, entry)
        ):
            left_out.append(entry)

    try:
        await copy_all(copy, source, target, jobs, verify, backup.objects, copied)
        for entry in left_out:
            await copy.delete(entry.image_id, lambda found: True)
        backup.images = await copy.count()
        files = await copy.files()
    finally:
        await copy.close()
        await live.close()
        await source.close()
        await target.close()
    backup.left_out = sorted(entry.image_id for entry in left_out)
    await asyncio.to_thread(_swap, partial, backup.dest)
    backup.removed = await asyncio.to_thread(_prune, backup.dest, files)
    await asyncio.to_thread(shutil.rmtree, partial)
    _mark(backup, finished=True)


# The command


def _report(backup: Backup, status: int, problem: str | None, as_json: bool) -> int:
    counts = backup.objects
    if as_json:
        document = {
            'command': 'backup',
            'to': str(backup.dest),
            'index': {'kind': backup.index.kind, 'where': backup.index.where},
            'images': backup.images,
            'objects': dataclasses.asdict(counts),
            'removed': backup.removed,
            'left_out': backup.left_out,
            'manifest': backup.manifest,
            'problem': problem,
            'status': status,
        }
        print(json.dumps(document, indent=2))
        return status
    print(f'Backup of the index ({backup.index.kind}, {backup.index.where}) and')
    print(f'the objects it names, into {backup.dest}:')
    print(f'  {counts.copied} objects copied ({counts.copied_bytes} bytes), '
          f'{counts.there} already there ({counts.there_bytes} bytes), '
          f'{backup.removed} removed')  # fmt: skip
    if backup.left_out:
        print(f'  left out, deleted or replaced while it ran: {len(backup.left_out)}')
    if backup.manifest:
        print(f'  the manifest of asgilook import, {STORAGE_MANIFEST}, with it')
    if problem:
        print(f'Failed: {problem}')
        return status
    keys = ' (with the same encryption keys)' if backup.sealed else ''
    print(f'Done: {backup.images} pictures. Serve it{keys} with asgilook serve '
          f'--storage {backup.dest}; check it with asgilook check --storage '
          f'{backup.dest}.')  # fmt: skip
    return status


def run(
    dest: pathlib.Path,
    *,
    storage: pathlib.Path | None = None,
    database_url: str | None = None,
    jobs: int = DEFAULT_JOBS,
    verify: bool = False,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Back the service that ``environ`` names up into ``dest``; the exit status."""
    storage = storage or default_storage(environ)
    try:
        config = settings(storage, environ)
        config.database_url = database_url or config.database_url
        place = index_move.configured(config)
        if place.root is not None and not (storage / SQLiteIndex.FILE).is_file():
            raise CannotStart(
                f'there is no index in {storage}: is it a storage directory?'
            )
        destination(dest, config)
    except CannotStart as ex:
        print(f'asgilook backup: cannot start: {ex}', file=sys.stderr)
        return CANNOT_START
    sealed = bool(config.encryption_key or config.encryption_old_keys)
    backup = Backup(dest, place, sealed)
    try:
        asyncio.run(back_up(config, backup, jobs, verify))
    except KeyboardInterrupt:
        problem = 'interrupted: run it again to go on'
        return _report(backup, INTERRUPTED, problem, as_json)
    except (StoreError, OSError) as ex:
        problem = (
            f'{str(ex).rstrip(".")}. The last backup in {dest} is whole; run '
            'it again to go on.'
        )
        return _report(backup, FAILED, problem, as_json)
    return _report(backup, OK, None, as_json)

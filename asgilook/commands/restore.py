"""``asgilook restore BACKUP``: a backup put back into the service's index and storage.

``BACKUP`` is what ``asgilook backup`` made (any storage directory will do:
an ``index.sqlite3`` beside ``images/`` and ``thumbnails/``). Its objects are
copied as they are stored into the storage that the settings name (the
storage directory, or ``ASGI_LOOK_STORAGE_URL`` and
``ASGI_LOOK_RENDITIONS_URL``: a bucket will do), then its index entries into
the index they name (``index.sqlite3`` in the storage directory, or
``ASGI_LOOK_DATABASE_URL``), each with every field, as
:mod:`~asgilook.commands.index_move` moves an index: ids, upload order and
times, delete tokens, names, visibility, owners and kept originals; with the
upload keys and the secret of signed URLs. The objects go first (the kept
originals among them), so that the index never lists a picture whose objects
are not there yet; the import manifest last, its lines added to the storage
directory's.

The index must be empty, or hold the first entries of the backup from a
restore that stopped (which goes on): anything else is refused, unless
``merge``: then the backup's pictures that the index does not have (by id)
are added after its own, and those it has are left as they are (as are its
keys, and its secret of signed URLs: only the keys it lacks are added).

The backup is only read: its index is read from a copy made with SQLite's
backup, as the service would otherwise open it for writing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import uuid
from collections.abc import Mapping

from asgilook.commands import index_move
from asgilook.commands.backup_copy import Copied
from asgilook.commands.backup_copy import Counts
from asgilook.commands.backup_copy import Raw
from asgilook.commands.backup_copy import copy_all
from asgilook.commands.backup_copy import merge_lines
from asgilook.commands.backup_copy import snapshot_sqlite
from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import STORAGE_MANIFEST
from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_walk import CANNOT_START
from asgilook.commands.objects_walk import FAILED
from asgilook.commands.objects_walk import INTERRUPTED
from asgilook.commands.objects_walk import OK
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import open_objects
from asgilook.commands.objects_walk import settings
from asgilook.config import Config
from asgilook.errors import StoreError
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index.sqlite import SQLiteIndex


@dataclasses.dataclass
class Restored:
    """What a restore did."""

    backup: pathlib.Path
    moved: index_move.Moved
    #: Where the objects went, for people.
    storage: str
    objects: Counts = dataclasses.field(default_factory=Counts)
    #: Lines added to the import manifest.
    manifest: int = 0


async def _merge(copy: Index, into: Index, moved: index_move.Moved) -> None:
    """Add the entries ``into`` lacks, by id; check that it has every id after.

    The upload keys it lacks are added too. NOTE: Not the secret of signed
    URLs: ``into`` is an index in use, whose own signed URLs must stay good.
    """
    before = await into.count()
    pager = index_move.Pager(copy, index_move.DEFAULT_BATCH)
    run = uuid.uuid4().hex[:12]
    while entries := await pager.next():
        await into.adopt(f'asgilook restore {run} {pager.after}', entries)
    pager = index_move.Pager(copy, index_move.DEFAULT_BATCH)
    while entries := await pager.next():
        for entry in entries:
            if await into.get(entry.image_id) is None:
                raise index_move.Failed(f'{entry.image_id} was not added')
    moved.copied = await into.count() - before
    moved.there = await copy.count() - moved.copied
    moved.keys = await index_move.copy_keys(copy, into)
    moved.verified = True


async def restore(
    config: Config, restored: Restored, merge: bool, verify: bool, jobs: int
) -> None:
    """Copy the objects, then the index, of the backup."""
    moved = restored.moved
    copy, into = moved.source.open(), moved.target.open()
    missing: list[str] = []

    async def copied(version: Copied) -> None:
        if not version.whole:
            missing.append(version.entry.image_id)

    async def lacking(entry: Entry) -> bool:
        return await into.get(entry.image_id) is None

    try:
        if not merge:
            try:
                await index_move.agree(
                    copy, into, index_move.DEFAULT_BATCH, whole=False
                )
            except index_move.Failed as ex:
                raise CannotStart(
                    f'the index in {moved.target.where} is not empty ({ex}): '
                    'restore into an empty one, or add --merge'
                ) from ex
        source = Raw.directory(restored.backup)
        objects = open_objects(config)
        objects.make()
        target = Raw.of(objects)
        try:
            await copy_all(
                copy,
                source,
                target,
                jobs,
                verify,
                restored.objects,
                copied,
                lacking if merge else None,
            )
        finally:
            await source.close()
            await target.close()
        if missing:
            raise index_move.Failed(
                f'{len(missing)} pictures of the backup lack their original or '
                f'animation (the first: {min(missing)}); run asgilook check '
                f'--storage {restored.backup}'
            )
        if merge:
            await _merge(copy, into, moved)
    finally:
        await copy.close()
        await into.close()
    if not merge:
        await index_move.move(moved, index_move.DEFAULT_BATCH)


def _report(restored: Restored, status: int, problem: str | None, as_json: bool) -> int:
    moved, counts = restored.moved, restored.objects
    if as_json:
        document = {
            'command': 'restore',
            'from': str(restored.backup),
            'index': {'kind': moved.target.kind, 'where': moved.target.where},
            'storage': restored.storage,
            'objects': dataclasses.asdict(counts),
            'entries': {'copied': moved.copied, 'already_there': moved.there},
            'keys_copied': moved.keys,
            'verified': moved.verified,
            'manifest_lines_added': restored.manifest,
            'problem': problem,
            'status': status,
        }
        print(json.dumps(document, indent=2))
        return status
    print(
        f'Restore of {restored.backup} into the index ({moved.target.kind}, '
        f'{moved.target.where}) and the storage {restored.storage}:'
    )
    print(
        f'  {counts.copied} objects copied ({counts.copied_bytes} bytes), '
        f'{counts.there} already there ({counts.there_bytes} bytes)'
    )
    print(f'  {moved.copied} index entries copied, {moved.there} already there')
    if moved.keys:
        print(f'  {moved.keys} upload keys copied')
    if moved.verified:
        print('  verified: every entry of the backup is in the index')
    if restored.manifest:
        print(f'  {restored.manifest} lines added to the manifest of asgilook import')
    print(f'Failed: {problem}' if problem else 'Done: start the service.')
    return status


def run(
    backup: pathlib.Path,
    *,
    storage: pathlib.Path | None = None,
    database_url: str | None = None,
    merge: bool = False,
    jobs: int = DEFAULT_JOBS,
    verify: bool = False,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Restore ``backup`` into the service that ``environ`` names; the exit status."""
    storage = storage or default_storage(environ)
    try:
        if not (backup / SQLiteIndex.FILE).is_file():
            raise CannotStart(f'{backup} is no backup: it has no {SQLiteIndex.FILE}')
        storage.mkdir(parents=True, exist_ok=True)
        config = settings(storage, environ)
        config.database_url = database_url or config.database_url
        target = index_move.configured(config)
        if index_move.same(target, index_move.sqlite_place(backup)):
            raise CannotStart(f'{backup} is the storage directory itself')
        objects = open_objects(config)
    except (CannotStart, OSError) as ex:
        print(f'asgilook restore: cannot start: {ex}', file=sys.stderr)
        return CANNOT_START
    where = objects.originals.url
    if objects.apart:
        where = f'{where} (renditions: {objects.renditions.url})'
    with tempfile.TemporaryDirectory(prefix='asgilook-restore-') as scratch:
        source = index_move.Place(
            'SQLite', str(backup / SQLiteIndex.FILE), root=pathlib.Path(scratch)
        )
        restored = Restored(backup, index_move.Moved(source, target), where)
        try:
            snapshot_sqlite(
                backup / SQLiteIndex.FILE, pathlib.Path(scratch) / SQLiteIndex.FILE
            )
            asyncio.run(restore(config, restored, merge, verify, jobs))
            restored.manifest = merge_lines(
                backup / STORAGE_MANIFEST, storage / STORAGE_MANIFEST
            )
        except CannotStart as ex:
            print(f'asgilook restore: cannot start: {ex}', file=sys.stderr)
            return CANNOT_START
        except KeyboardInterrupt:
            return _report(
                restored, INTERRUPTED, 'interrupted: run it again to go on', as_json
            )
        except (index_move.Failed, StoreError, OSError) as ex:
            problem = f'{str(ex).rstrip(".")}. Run it again to go on.'
            return _report(restored, FAILED, problem, as_json)
    return _report(restored, OK, None, as_json)

"""``asgilook check``: a storage directory against its index, and its repair.

After a disk incident the files of a storage directory (see
:mod:`asgilook.storage.files`) and the index (see
:mod:`asgilook.storage.index`) may no longer agree. :func:`check` compares
them and reports, by :class:`~asgilook.commands.check.report.Kind`:

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

This module is the command: :func:`run` (which :mod:`asgilook.commands.cli`
calls), :func:`settings` and :func:`check`. Its parts, in the order a check
goes:

* :mod:`~asgilook.commands.check.report`: what is found (``Kind``,
  ``Problem``, ``Report``), and the exit statuses;
* :mod:`~asgilook.commands.check.walk`: the walk of the index and the files;
* :mod:`~asgilook.commands.check.repair`: each problem confirmed, and
  repaired; the service's cache made stale;
* :mod:`~asgilook.commands.check.output`: the summary, or the JSON document.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from collections.abc import Mapping

from asgilook.commands import processes
from asgilook.commands.check.output import document
from asgilook.commands.check.output import summary
from asgilook.commands.check.repair import settle
from asgilook.commands.check.repair import stale_cache
from asgilook.commands.check.report import CANNOT_CHECK
from asgilook.commands.check.report import CannotCheck
from asgilook.commands.check.report import Report
from asgilook.commands.check.walk import find
from asgilook.commands.defaults import DEFAULT_GRACE
from asgilook.config import Config
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.storage.index import open_index
from asgilook.storage.index.sqlite import SQLiteIndex


async def check(
    config: Config, *, repair: bool = False, grace: float = DEFAULT_GRACE
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
        await find(config, index, report)
        await settle(config, index, report)
    finally:
        await index.close()
    await stale_cache(config, report)
    return report


def settings(
    storage: pathlib.Path,
    database_url: str | None,
    environ: Mapping[str, str],
) -> Config:
    """The settings of a service on ``storage`` with that index, in ``environ``.

    ``environ`` is read, never written: its ``ASGI_LOOK_STORAGE_PATH`` is
    replaced by ``storage`` in a copy.

    Raises:
        CannotCheck: there is no such directory, or a setting is wrong.
    """
    if not storage.is_dir():
        raise CannotCheck(f'there is no storage directory {storage}')
    # NOTE: Config makes the directory ASGI_LOOK_STORAGE_PATH names (or its
    #   own default): it is given this one, which is there.
    try:
        config = Config.from_environ(
            {**environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)}
        )
    except ValueError as ex:
        raise CannotCheck(str(ex)) from ex
    config.database_url = database_url or None
    return config


def run(
    storage: pathlib.Path,
    *,
    database_url: str | None = None,
    repair: bool = False,
    grace: float = DEFAULT_GRACE,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Check (and repair) ``storage``, print what was found; the exit status.

    The settings of the service (its Redis, say) are read from ``environ``.
    """
    try:
        config = settings(storage, database_url, environ)
        report = asyncio.run(check(config, repair=repair, grace=grace))
    except (CannotCheck, StorageFull, StorageUnavailable, OSError) as ex:
        print(f'asgilook check: cannot check {storage}: {ex}', file=sys.stderr)
        return CANNOT_CHECK
    if as_json:
        print(json.dumps(document(report), indent=2))
    else:
        print(summary(report), end='')
    return report.status

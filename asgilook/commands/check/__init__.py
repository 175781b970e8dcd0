"""``asgilook check``: the objects of a storage against its index, and repair.

After a disk incident, or a bucket's, the objects of a storage (originals,
thumbnails and animations by key, see :mod:`asgilook.storage.objects`; on a
local directory, its files) and the index (see :mod:`asgilook.storage.index`)
may no longer agree. :func:`check` compares them, wherever the objects are
kept (a local directory or an S3 bucket, the renditions possibly apart from
the originals: ``ASGI_LOOK_STORAGE_URL``, ``ASGI_LOOK_RENDITIONS_URL``), and
reports, by :class:`~asgilook.commands.check.report.Kind`:

* images of the index whose picture, the original, is missing or empty;
* images missing some of their JPEG thumbnails, their animation, or the
  original kept as uploaded that the index says they have;
* damaged objects: an original, kept original, animation or thumbnail of an
  image of the index that fails authentication (sealed with a key this service
  does not have, swapped, or damaged; see :mod:`asgilook.storage.crypto`). By
  default each object's header and size are read, which finds all but a
  damaged byte inside a segment; ``verify`` reads every object whole, which
  finds that too (see :mod:`~asgilook.commands.check.reading`);
* orphans: originals, kept originals, animations and thumbnail folders that no
  image of the index refers to, left by an upload that died before its commit,
  or whose commit was not confirmed;
* stale ``.partial`` files of a local directory: writes that never finished.

With ``repair`` it removes the images without their picture from the index
(and what is left of their objects), renders missing and damaged thumbnails
again from the original, and removes orphans and stale ``.partial`` files.
When it removed an image from the index, it makes the service's cached
responses in Redis (``ASGI_LOOK_REDIS_URL``) stale, as a deletion does, so
that no cached listing shows it. A missing animation or kept original cannot
be made again, nor can a damaged original, kept original or animation: they
are reported as problems that stay, with what to do.

It may run beside a service on the same objects and index. An upload
writes its objects before the index lists it, and a local write in progress
is a ``.partial`` file, so unlisted objects younger than the grace period are
left alone: they are neither problems nor removed. Every problem is looked up
in the index again just before it is reported or repaired, so that what the
service did meanwhile (an image replaced or deleted, an upload listed) is not
taken for damage; and an image is removed from the index only if its entry
still names the version that was checked.

It scales with the index, not with memory: the index is read a page at a
time, and the objects are listed a page at a time. What it keeps is the set
of the original file names in the index (some 150 MB for a million images)
and the problems it found.

This module is the command: :func:`run` (which :mod:`asgilook.commands.cli`
calls), :func:`settings` and :func:`check`. Its parts, in the order a check
goes:

* :mod:`~asgilook.commands.check.report`: what is found (``Kind``,
  ``Problem``, ``Report``), and the exit statuses;
* :mod:`~asgilook.commands.check.walk`: the walk of the index and of the
  objects of each version it lists;
* :mod:`~asgilook.commands.check.reading`: how an object is read, its header
  or all of it;
* :mod:`~asgilook.commands.check.listing`: the listing of the objects, for
  those no version refers to, and the ``.partial`` files;
* :mod:`~asgilook.commands.check.repair`: each problem confirmed, and
  repaired; the service's cache made stale;
* :mod:`~asgilook.commands.check.output`: the summary, or the JSON document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import sys
from collections.abc import Iterator
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
from asgilook.storage.blobs import sealed
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.index import open_index
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.objects import Objects


async def check(
    config: Config,
    *,
    repair: bool = False,
    grace: float = DEFAULT_GRACE,
    verify: bool = False,
) -> Report:
    """Check the objects of ``config`` against its index.

    Args:
        config: Where the objects (``storage_url``, ``renditions_url``, else
            the storage directory) and the index are, and the keys.
        repair: Repair what can be repaired, too.
        grace: How old, in seconds, unlisted objects must be to be orphans.
        verify: Read every object of the images whole, not only its header
            and size: a damaged byte of a sealed object is found too.

    Raises:
        CannotCheck: the storage directory has no SQLite index (and no
            database URL is given): it is not a storage directory; or the
            storage URLs or the keys are wrong.
        StorageUnavailable, StorageFull: the index or a backend cannot be used.
        OSError: a folder of a local directory cannot be read.
    """
    root = pathlib.Path(os.fspath(config.storage_path))
    local_index = root / SQLiteIndex.FILE
    if config.database_url:
        index_name = f'PostgreSQL at {processes.redacted(config.database_url)}'
    elif local_index.is_file():
        # NOTE: Said where it is when the objects are elsewhere.
        index_name = (
            f'SQLite, {local_index if config.storage_url else local_index.name}'
        )
    else:
        # NOTE: Not made empty: then every object would be an orphan.
        raise CannotCheck(
            f'there is no index in {root} ({SQLiteIndex.FILE}): is it a storage '
            'directory? With a PostgreSQL index, give its --database-url.'
        )
    try:
        objects = Objects.of(config)
    except ValueError as ex:
        raise CannotCheck(str(ex)) from ex
    index = open_index(config)
    report = Report(
        objects.originals.url,
        index_name,
        repair,
        grace,
        verify=verify,
        renditions=objects.renditions.url if objects.apart else None,
        local=all(
            isinstance(blobs.inner, LocalBlobs)
            for blobs in (objects.originals, objects.renditions)
        ),
    )
    try:
        await find(config, index, objects, report)
        await settle(config, index, objects, report)
    finally:
        await index.close()
        await objects.close()
    await stale_cache(config, report)
    return report


def settings(
    storage: pathlib.Path,
    database_url: str | None,
    environ: Mapping[str, str],
) -> Config:
    """The settings of a service on ``storage`` with that index, in ``environ``.

    As ``asgilook serve`` reads them: where the objects are kept
    (``ASGI_LOOK_STORAGE_URL``, ``ASGI_LOOK_RENDITIONS_URL`` and the ``AWS_*``
    variables; unset, in ``storage``) and the encryption keys. ``storage``
    holds what is local: the SQLite index, unless ``database_url``.
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
    verify: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Check (and repair) ``storage``, print what was found; the exit status.

    The settings of the service (where its objects are, its keys, its Redis)
    are read from ``environ``.
    """
    try:
        config = settings(storage, database_url, environ)
        with _quiet():
            report = asyncio.run(
                check(config, repair=repair, grace=grace, verify=verify)
            )
    except (CannotCheck, StorageFull, StorageUnavailable, OSError) as ex:
        print(f'asgilook check: cannot check {storage}: {ex}', file=sys.stderr)
        return CANNOT_CHECK
    if as_json:
        print(json.dumps(document(report), indent=2))
    else:
        print(summary(report), end='')
    return report.status


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without the log of each object that fails authentication: the report
    says them all."""

    def drop(record: logging.LogRecord) -> bool:
        return False

    sealed.log.addFilter(drop)
    try:
        yield
    finally:
        sealed.log.removeFilter(drop)

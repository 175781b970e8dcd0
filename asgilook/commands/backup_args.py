"""The arguments and help of ``asgilook backup`` and ``asgilook restore``.

:mod:`asgilook.commands.cli` adds them to its parser with :func:`add_backup`
and :func:`add_restore`; the commands, :mod:`~asgilook.commands.backup` and
:mod:`~asgilook.commands.restore`, are imported only when they run.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable
from collections.abc import Mapping

from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import STORAGE_MANIFEST
from asgilook.commands.defaults import default_storage

_RAW = argparse.RawDescriptionHelpFormatter

_BACKUP_DESCRIPTION = f"""\
Copy the whole service into DEST while it serves, uploads and deletions
going on: first its index, as one snapshot (SQLite's online backup of
index.sqlite3, or every row of ASGI_LOOK_DATABASE_URL read in one REPEATABLE
READ transaction), then every object that the snapshot names (originals,
animations, thumbnails), wherever they are kept (the storage directory, or
ASGI_LOOK_STORAGE_URL and ASGI_LOOK_RENDITIONS_URL), and the manifest of
`asgilook import --storage` ({STORAGE_MANIFEST}). A picture deleted or replaced
while it runs, whose objects are gone, is left out of the copy's index.

DEST is a storage directory of its own, in the local layout: `asgilook serve
--storage DEST` serves it, `asgilook check --storage DEST` checks it, and
`asgilook restore DEST` puts it back. Objects are copied as they are stored:
sealed ones stay sealed, and need the same keys to be served or restored.

Run it again into the same DEST: only new objects are copied (an object
there with the same size is the same: objects never change once written;
--verify compares their bytes instead), and what the new snapshot no longer
names is removed. Until the end, DEST holds the last backup, whole. DEST must
be empty, new, or a backup.
"""
_BACKUP_EPILOG = """\
examples:
  asgilook backup /mnt/backup/asgilook
      the storage directory of `asgilook serve`, and its index
  ASGI_LOOK_DATABASE_URL=postgresql://db/asgilook ASGI_LOOK_STORAGE_URL=s3://pictures \\
    asgilook backup /mnt/backup/asgilook
  asgilook backup /mnt/backup/asgilook --verify --json | jq .objects
then:
  asgilook check --storage /mnt/backup/asgilook --grace 0

exit status:
  0    the backup is whole
  1    it failed (the summary says why); the last backup in DEST is whole:
       run the same command again
  2    usage error, or it cannot start: no such storage or index, a bad
       setting, a DEST that is neither empty nor a backup
  130  interrupted (Ctrl-C); run the same command again to go on
"""
_RESTORE_DESCRIPTION = f"""\
Put a backup (what `asgilook backup` made) back: its objects, as stored, into
the storage that the settings name (the storage directory, or
ASGI_LOOK_STORAGE_URL and ASGI_LOOK_RENDITIONS_URL: a bucket will do), then its
index entries into the index they name (index.sqlite3 in the storage
directory, or ASGI_LOOK_DATABASE_URL), keeping ids, upload order and times,
and delete tokens; then the lines of its {STORAGE_MANIFEST} are added to the
storage directory's. Stop the service first, or at least its uploads.

The index must be empty (or hold the first part of the same backup, from a
restore that stopped: it goes on). --merge adds the backup's pictures that
the index lacks (by id) after its own, and leaves those it has.
Sealed objects stay sealed: the service needs the keys they were sealed
with. The backup is only read.
"""
_RESTORE_EPILOG = """\
examples:
  asgilook restore /mnt/backup/asgilook --storage /srv/asgilook
  ASGI_LOOK_DATABASE_URL=postgresql://db/asgilook asgilook restore /mnt/backup/asgilook
  asgilook restore /mnt/backup/asgilook --merge
      after a partial loss: only the pictures the index lacks

exit status:
  0    every object and entry is there, and the index verified
  1    it failed (the summary says why); run the same command again
  2    usage error, or it cannot start: no backup there, a bad setting, an
       index that is not empty (without --merge)
  130  interrupted (Ctrl-C); run the same command again to go on
"""


def _add_common(
    parser: argparse.ArgumentParser,
    environ: Mapping[str, str],
    positive: Callable[[str], int],
) -> None:
    parser.add_argument(
        '--storage',
        type=pathlib.Path,
        default=default_storage(environ),
        metavar='PATH',
        help='the storage directory (%(default)s), as for `asgilook serve`',
    )
    parser.add_argument(
        '--database-url',
        default=environ.get('ASGI_LOOK_DATABASE_URL'),
        metavar='URL',
        help='the PostgreSQL index: $ASGI_LOOK_DATABASE_URL, else the SQLite '
        'index in the storage directory',
    )
    parser.add_argument(
        '--jobs',
        type=positive,
        default=DEFAULT_JOBS,
        metavar='N',
        help='pictures copied at a time (%(default)s)',
    )
    parser.add_argument(
        '--verify',
        action='store_true',
        help='compare the bytes of objects already there, not only their sizes',
    )
    parser.add_argument(
        '--json', action='store_true', help='print the summary as JSON, for programs'
    )


def add_backup(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
    positive: Callable[[str], int],
) -> None:
    """``asgilook backup``; ``positive`` is the type of a count (``--jobs``)."""
    parser = commands.add_parser(
        'backup',
        help='copy the index and the pictures into a directory, while it serves',
        description=_BACKUP_DESCRIPTION,
        epilog=_BACKUP_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_backup)
    parser.add_argument('dest', type=pathlib.Path, metavar='DEST')
    _add_common(parser, environ, positive)


def add_restore(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
    positive: Callable[[str], int],
) -> None:
    """``asgilook restore``; ``positive`` is the type of a count (``--jobs``)."""
    parser = commands.add_parser(
        'restore',
        help='put a backup back into the index and storage',
        description=_RESTORE_DESCRIPTION,
        epilog=_RESTORE_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_restore)
    parser.add_argument('backup', type=pathlib.Path, metavar='BACKUP')
    parser.add_argument(
        '--merge',
        action='store_true',
        help='into an index that is not empty: add the pictures it lacks',
    )
    _add_common(parser, environ, positive)


def _backup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import backup

    return backup.run(
        args.dest,
        storage=args.storage,
        database_url=args.database_url,
        jobs=args.jobs,
        verify=args.verify,
        as_json=args.json,
        environ=environ,
    )


def _restore(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import restore

    return restore.run(
        args.backup,
        storage=args.storage,
        database_url=args.database_url,
        merge=args.merge,
        jobs=args.jobs,
        verify=args.verify,
        as_json=args.json,
        environ=environ,
    )

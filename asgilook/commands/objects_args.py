"""The arguments and help of ``asgilook migrate`` and ``asgilook rekey``.

:mod:`asgilook.commands.cli` adds them to its parser with :func:`add_migrate`
and :func:`add_rekey`. The commands themselves, :mod:`~asgilook.commands.migrate`
and :mod:`~asgilook.commands.rekey`, are imported only when they run: rich and
the storage backends would slow every other command down.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable
from collections.abc import Mapping

from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import default_storage

_RAW = argparse.RawDescriptionHelpFormatter

_MIGRATE_DESCRIPTION = """\
Copy every object of a storage (originals, thumbnails, animations) to another
place: a directory, or an S3-compatible bucket, s3://BUCKET[/PREFIX] with the
AWS_* variables; from a directory to a bucket, and back. The storage copied
is the one `asgilook serve` uses with the same settings: --storage (or
ASGI_LOOK_STORAGE_PATH), ASGI_LOOK_STORAGE_URL, ASGI_LOOK_RENDITIONS_URL and
the keys. The originals go to --to, and the renditions (thumbnails and
animations) too, unless --renditions-to names another place for them. The
index is not touched: it names the objects by key, and keys do not change.

Each object is read (decrypted if it was sealed), written (sealed under
ASGI_LOOK_ENCRYPTION_KEY if it is set), read back and compared by SHA-256.
An object already there with the same content is skipped, and one there that
differs or is damaged is copied again: run it again after a failure, and it
goes on; a second run copies nothing.

A service may go on serving meanwhile: objects never change once written,
and one deleted during the copy is counted as gone. Uploads made during the
copy are not in it: once the service uses the new place, run the same
command again, with the old settings, to copy them.

--to-database URL moves the index instead (the objects stay where they are):
the SQLite index of the storage directory, or ASGI_LOOK_DATABASE_URL's, into
postgresql://USER@HOST/DB, or sqlite (the storage directory's index.sqlite3),
or sqlite:///DIRECTORY; every entry keeps its id, upload order and time and
delete token. --batch entries go in one transaction; a run that stops goes
on at the next; a destination with other entries is refused. Both sides are
compared at the end, and a SQLite index moved out is renamed
index.sqlite3.migrated. Stop the service first: a change fails the move.
"""
_MIGRATE_EPILOG = """\
examples:
  asgilook migrate --to s3://pictures/asgilook
      the storage directory of `asgilook serve` to a bucket (AWS_* variables)
  asgilook migrate --to s3://pictures --renditions-to /var/cache/asgilook
      the originals to the bucket, thumbnails and animations to a local disk
  ASGI_LOOK_STORAGE_URL=s3://pictures asgilook migrate --to ~/.local/share/asgilook
      back from the bucket to the storage directory
  asgilook migrate --to /mnt/backup/asgilook --json | jq .objects
  asgilook migrate --to-database postgresql://asgilook@db/asgilook
      the index into PostgreSQL; then serve with ASGI_LOOK_DATABASE_URL

then serve from there, and copy what was uploaded meanwhile:
  ASGI_LOOK_STORAGE_URL=s3://pictures/asgilook asgilook serve
  asgilook migrate --to s3://pictures/asgilook

exit status:
  0    every object was copied, or was there already (or gone)
  1    some objects could not be copied (the summary says which and why), or
       the copy stopped; run the same command again to go on
  2    usage error, or the copy cannot start: no such storage, a bad URL or
       setting, a destination that cannot be written
  130  interrupted (Ctrl-C); run the same command again to go on
"""
_REKEY_DESCRIPTION = """\
Put every object of a storage under the current encryption key,
ASGI_LOOK_ENCRYPTION_KEY, after a key rotation or once encryption is turned
on. An object sealed under an old key (of ASGI_LOOK_ENCRYPTION_OLD_KEYS) gets
a new header under the current key (rewrapped; its data is not encrypted
again), or with --reencrypt is encrypted again under a new data key
(reencrypted); an object stored plain, before encryption was on, is sealed;
one under the current key already is left as it is (current). The storage is
the one `asgilook serve` uses with the same settings: --storage (or
ASGI_LOOK_STORAGE_PATH), ASGI_LOOK_STORAGE_URL, ASGI_LOOK_RENDITIONS_URL.

A service may go on serving meanwhile, if it has the same keys. It can be run
again: what is done is current, and an object deleted meanwhile is missing.
Once it ends with status 0, the old keys may be removed from
ASGI_LOOK_ENCRYPTION_OLD_KEYS: nothing needs them any more.
"""
_REKEY_EPILOG = """\
examples:
  asgilook rekey
      the storage of `asgilook serve`, with its keys
  asgilook rekey --storage /srv/asgilook --jobs 8
  asgilook rekey --reencrypt
      new data keys too, as if every object were uploaded again
  asgilook rekey --json | jq .objects

a key rotation:
  1. ASGI_LOOK_ENCRYPTION_KEY=$(openssl rand -base64 32), and the old key
     moved to ASGI_LOOK_ENCRYPTION_OLD_KEYS; restart the service
  2. asgilook rekey, with the same settings
  3. the old key removed from ASGI_LOOK_ENCRYPTION_OLD_KEYS; restart it

exit status:
  0    every object is under the current key (or was gone)
  1    some objects could not be resealed (the summary says which and why):
       keep the old keys; or it stopped: run it again to go on
  2    usage error, or it cannot start: ASGI_LOOK_ENCRYPTION_KEY is not set,
       no such storage, a bad setting, a storage that cannot be written
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
        '--jobs',
        type=positive,
        default=DEFAULT_JOBS,
        metavar='N',
        help='objects done at a time (%(default)s)',
    )
    parser.add_argument(
        '--json', action='store_true', help='print the summary as JSON, for programs'
    )


def add_migrate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
    positive: Callable[[str], int],
) -> None:
    """``asgilook migrate``; ``positive`` is the type of a count (``--jobs``)."""
    parser = commands.add_parser(
        'migrate',
        help='copy every object of a storage to a directory or a bucket',
        description=_MIGRATE_DESCRIPTION,
        epilog=_MIGRATE_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_migrate, usage_error=parser.error)
    to = parser.add_mutually_exclusive_group()
    to.add_argument(
        '--to',
        metavar='URL',
        help='where to copy them: a directory, or s3://BUCKET[/PREFIX]',
    )
    to.add_argument(
        '--to-database',
        metavar='URL',
        help='move the index instead, into this database: postgresql://..., or '
        "sqlite (the storage directory's index.sqlite3), or sqlite:///DIRECTORY",
    )
    parser.add_argument(
        '--batch',
        type=positive,
        default=1000,
        metavar='N',
        help='with --to-database: entries copied in one transaction (%(default)s)',
    )
    parser.add_argument(
        '--renditions-to',
        metavar='URL',
        help='where to copy thumbnails and animations, if not to --to',
    )
    _add_common(parser, environ, positive)


def add_rekey(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
    positive: Callable[[str], int],
) -> None:
    """``asgilook rekey``; ``positive`` is the type of a count (``--jobs``)."""
    parser = commands.add_parser(
        'rekey',
        help='put every object of a storage under the current encryption key',
        description=_REKEY_DESCRIPTION,
        epilog=_REKEY_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_rekey)
    parser.add_argument(
        '--reencrypt',
        action='store_true',
        help='encrypt every object again, under a new data key',
    )
    _add_common(parser, environ, positive)


def _migrate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.to_database is not None:
        from asgilook.commands import index_move

        return index_move.run(
            args.to_database,
            storage=args.storage,
            batch=args.batch,
            as_json=args.json,
            environ=environ,
        )
    if args.to is None:
        args.usage_error(
            'the following arguments are required: --to (or --to-database)'
        )
    from asgilook.commands import migrate

    return migrate.run(
        args.to,
        renditions_to=args.renditions_to,
        storage=args.storage,
        jobs=args.jobs,
        as_json=args.json,
        environ=environ,
    )


def _rekey(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import rekey

    return rekey.run(
        reencrypt=args.reencrypt,
        storage=args.storage,
        jobs=args.jobs,
        as_json=args.json,
        environ=environ,
    )

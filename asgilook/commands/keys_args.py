"""The arguments and help of ``asgilook keys add``, ``keys list`` and ``keys revoke``.

:mod:`asgilook.commands.cli` adds them to its parser with :func:`add_keys`;
the command itself, :mod:`~asgilook.commands.keys`, is imported only when it
runs. Names, sizes and rates are checked here, so that a bad one is a usage
error (exit status 2) before any index is opened.
"""

from __future__ import annotations

import argparse
import pathlib
import re
from collections.abc import Mapping

from asgilook.commands.defaults import default_storage
from asgilook.settings import byte_size

_RAW = argparse.RawDescriptionHelpFormatter
#: What a key's name may be: it is shown in logs and in error messages, so
#: nothing that needs quoting there.
NAME = re.compile(r'[A-Za-z0-9_.@-]{1,64}', re.ASCII)

_KEYS_DESCRIPTION = """\
Manage upload keys. With ASGI_LOOK_UPLOADS=keys, POST /images needs
`Authorization: Bearer KEY`, with a key made here; a key may have a quota
(bytes its pictures may hold), a rate (uploads a minute) and be an admin's
(who may delete any picture). Keys are kept in the service's index, the one
`asgilook serve` reads: index.sqlite3 in the storage directory, or
ASGI_LOOK_DATABASE_URL. Only a key's SHA-256 is kept: a key that is lost
cannot be shown again, only revoked, and another made.
"""
_KEYS_EPILOG = """\
examples:
  asgilook keys add alice --quota 10GiB --rate 30
  asgilook keys add ci@build-1 --quota 500MB | tail -1
      the new key alone, for a script
  asgilook keys add ada --admin
  asgilook keys list
  asgilook keys revoke alice
  asgilook keys list --json | jq '.keys[] | select(.revoked == null) | .name'

exit status:
  0  done (revoking a revoked key again is done too)
  1  there is (or was) a key of that name, there is no key of that name,
     or the index cannot be used (the message says why)
  2  usage error: a bad name, size or rate; or the settings cannot be used
"""


def _name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a key name: 1 to 64 letters, digits, "-", "_", '
            '"." and "@"'
        )
    return text


def _size(text: str) -> int:
    # NOTE: The settings' own parser, so that a quota reads as the byte
    #   limits of the configuration do ('3MB', '10GiB'). 0 is a quota too:
    #   such a key may upload nothing, and still list its pictures.
    try:
        return byte_size(text)
    except ValueError as ex:
        raise argparse.ArgumentTypeError(f'{text!r} is not {ex}') from None


def _rate(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a rate: a whole number of uploads a minute, above 0'
        )
    return int(text)


def _add_common(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
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
        '--json', action='store_true', help='print one JSON document, for programs'
    )


def add_keys(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    environ: Mapping[str, str],
) -> None:
    """``asgilook keys``, with its three actions: ``add``, ``list``, ``revoke``."""
    parser = commands.add_parser(
        'keys',
        help='add, list and revoke upload keys (ASGI_LOOK_UPLOADS=keys)',
        description=_KEYS_DESCRIPTION,
        epilog=_KEYS_EPILOG,
        formatter_class=_RAW,
    )
    actions = parser.add_subparsers(title='actions', metavar='ACTION', required=True)
    add = actions.add_parser(
        'add',
        help='make a key; it is printed once, alone on the last line',
        description='Make an upload key named NAME, and print it, alone on the\n'
        'last line. Only its SHA-256 is kept: it cannot be shown again.',
        epilog=_KEYS_EPILOG,
        formatter_class=_RAW,
    )
    add.set_defaults(command=_add)
    add.add_argument('name', type=_name, metavar='NAME', help='who it is for')
    add.add_argument(
        '--quota',
        type=_size,
        metavar='SIZE',
        help='the bytes its pictures may hold, such as 3MB or 10GiB (no limit)',
    )
    add.add_argument(
        '--rate', type=_rate, metavar='N', help='uploads a minute (no limit)'
    )
    add.add_argument('--admin', action='store_true', help='it may delete any picture')
    _add_common(add, environ)
    listing = actions.add_parser(
        'list',
        help='every key, revoked ones too, with what its pictures hold',
        description='List every upload key, revoked ones too: its quota, the\n'
        'bytes its pictures hold and what is left, its rate, whether it is an\n'
        "admin's, when it was made and revoked.",
        epilog=_KEYS_EPILOG,
        formatter_class=_RAW,
    )
    listing.set_defaults(command=_list)
    _add_common(listing, environ)
    revoke = actions.add_parser(
        'revoke',
        help='refuse a key from now on (its pictures stay)',
        description='Revoke the upload key named NAME: it is refused from now\n'
        'on. Its pictures stay; its name is never used again.',
        epilog=_KEYS_EPILOG,
        formatter_class=_RAW,
    )
    revoke.set_defaults(command=_revoke)
    revoke.add_argument('name', type=_name, metavar='NAME')
    _add_common(revoke, environ)


def _add(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import keys

    return keys.add(
        args.name,
        quota=args.quota,
        rate=args.rate,
        admin=args.admin,
        storage=args.storage,
        database_url=args.database_url,
        as_json=args.json,
        environ=environ,
    )


def _list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import keys

    return keys.listing(
        storage=args.storage,
        database_url=args.database_url,
        as_json=args.json,
        environ=environ,
    )


def _revoke(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from asgilook.commands import keys

    return keys.revoke(
        args.name,
        storage=args.storage,
        database_url=args.database_url,
        as_json=args.json,
        environ=environ,
    )

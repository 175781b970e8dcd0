"""``asgilook keys add|list|revoke``: the upload keys of ``ASGI_LOOK_UPLOADS=keys``.

The keys live in the service's index, the one that the settings name as
``asgilook serve`` reads them: ``index.sqlite3`` in the storage directory, or
the PostgreSQL database of ``ASGI_LOOK_DATABASE_URL``. So a key made on one
machine is known at once to every worker of every machine that shares the
index, and nothing has to be restarted.

A key is ``alk_`` and 32 random bytes in URL-safe base64: the prefix lets a
secret scanner (and a person) tell it for what it is. Only its SHA-256 is
stored; the key itself is printed once, alone on the last line, so that
``asgilook keys add NAME | tail -1`` hands it to a script. A lost key cannot
be shown again: revoke it and make another. Names are never used twice, not
even a revoked key's: the pictures (and log lines) of the old key must not be
taken for the new one's.

:mod:`~asgilook.commands.keys_args` parses the arguments; the functions here
are the three actions, each returning the exit status.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pathlib
import secrets
import sys
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from asgilook.commands.defaults import default_storage
from asgilook.commands.objects_walk import CANNOT_START
from asgilook.commands.objects_walk import FAILED
from asgilook.commands.objects_walk import OK
from asgilook.commands.objects_walk import CannotStart
from asgilook.config import Config
from asgilook.errors import StoreError
from asgilook.settings import format_bytes
from asgilook.storage.index import Index
from asgilook.storage.index import KeyExists
from asgilook.storage.index import NewerSchema
from asgilook.storage.index import UploadKey
from asgilook.storage.index import key_hash
from asgilook.storage.index import open_index

#: What every key starts with.
PREFIX = 'alk_'
#: Random bytes in a key: as many as SHA-256 keeps.
KEY_BYTES = 32

_T = TypeVar('_T')
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_COLUMNS = ('NAME', 'QUOTA', 'USED', 'LEFT', 'RATE', 'ADMIN', 'CREATED', 'REVOKED')


class Problem(Exception):
    """The action could not be done; ``str(ex)`` says why, in one line."""


def new_key() -> str:
    """A new upload key: the prefix, then 32 random bytes, URL-safe."""
    return PREFIX + secrets.token_urlsafe(KEY_BYTES)


def moment(microseconds: int) -> str:
    """A time of the index (µs since the epoch) in ISO 8601, UTC."""
    when = _EPOCH + datetime.timedelta(microseconds=microseconds)
    return when.isoformat(timespec='seconds')


def left(key: UploadKey) -> int | None:
    """The bytes that the key's pictures may still take; None without a quota."""
    # NOTE: Never below 0: pictures adopted from elsewhere may hold more.
    return None if key.quota is None else max(0, key.quota - key.used)


def document(key: UploadKey) -> dict[str, Any]:
    """A key as ``--json`` shows it; never its hash."""
    return {
        'name': key.name,
        'quota': key.quota,
        'used': key.used,
        'left': left(key),
        'rate': key.rate,
        'admin': key.admin,
        'created': moment(key.created),
        'revoked': None if key.revoked is None else moment(key.revoked),
    }


# The index


def _config(
    storage: pathlib.Path, database_url: str | None, environ: Mapping[str, str]
) -> Config:
    """The settings of ``asgilook serve`` on ``storage`` (read, never written).

    Raises:
        CannotStart: a setting is wrong, or the index is SQLite's and there
            is no storage directory to hold it.
    """
    database_url = database_url or environ.get('ASGI_LOOK_DATABASE_URL')
    # NOTE: Refused rather than made (as Config would make it): a key added
    #   to an index in the wrong place would be refused by the service, and
    #   nothing would say why.
    if not database_url and not storage.is_dir():
        raise CannotStart(f'there is no storage directory {storage}')
    try:
        config = Config.from_environ(
            {**environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)}
        )
    except ValueError as ex:
        raise CannotStart(str(ex)) from ex
    config.database_url = database_url or config.database_url
    return config


async def _using(config: Config, work: Callable[[Index], Awaitable[_T]]) -> _T:
    index = open_index(config)
    try:
        return await work(index)
    finally:
        await index.close()


def _run(config: Config, work: Callable[[Index], Awaitable[_T]]) -> _T:
    """``work`` done on the index of ``config``, which is closed after.

    Raises:
        Problem: the index cannot be used (or ``work`` raised it).
    """
    try:
        return asyncio.run(_using(config, work))
    except (StoreError, NewerSchema, OSError) as ex:
        raise Problem(f'the index cannot be used: {str(ex).rstrip(".")}') from ex


def _start(
    action: str,
    storage: pathlib.Path | None,
    database_url: str | None,
    environ: Mapping[str, str],
) -> Config | None:
    """The settings; None (after saying why on stderr) if they cannot be used."""
    try:
        return _config(storage or default_storage(environ), database_url, environ)
    except CannotStart as ex:
        print(f'asgilook keys {action}: cannot start: {ex}', file=sys.stderr)
        return None


def _failed(action: str, problem: str, as_json: bool, **empty: Any) -> int:
    print(f'asgilook keys {action}: {problem}', file=sys.stderr)
    if as_json:
        _print_json(action, FAILED, problem, **empty)
    return FAILED


def _print_json(action: str, status: int, problem: str | None, **fields: Any) -> None:
    whole = {'command': f'keys {action}', **fields, 'problem': problem}
    print(json.dumps({**whole, 'status': status}, indent=2))


# What people read


def _limits(key: UploadKey) -> str:
    quota = 'no quota' if key.quota is None else f'quota {format_bytes(key.quota)}'
    rate = 'no rate limit' if key.rate is None else f'{key.rate} uploads a minute'
    admin = ', admin (may delete any picture)' if key.admin else ''
    return f'{quota}, {rate}{admin}'


def _row(key: UploadKey) -> tuple[str, ...]:
    remaining = left(key)
    return (
        key.name,
        'none' if key.quota is None else format_bytes(key.quota),
        format_bytes(key.used),
        '-' if remaining is None else format_bytes(remaining),
        'none' if key.rate is None else f'{key.rate}/min',
        'yes' if key.admin else 'no',
        moment(key.created),
        '-' if key.revoked is None else moment(key.revoked),
    )


def _table(keys: list[UploadKey]) -> None:
    rows = [_COLUMNS, *(_row(key) for key in keys)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print('  '.join(cells).rstrip())


# The actions


def add(
    name: str,
    *,
    quota: int | None = None,
    rate: int | None = None,
    admin: bool = False,
    storage: pathlib.Path | None = None,
    database_url: str | None = None,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Make the key ``name``; print it, alone on the last line. The exit status."""
    config = _start('add', storage, database_url, environ)
    if config is None:
        return CANNOT_START
    key = new_key()
    wanted = UploadKey(name, key_hash(key), quota=quota, rate=rate, admin=admin)

    async def adding(index: Index) -> UploadKey:
        try:
            return await index.add_key(wanted)
        except KeyExists:
            raise Problem(
                f'there is (or was) an upload key named {name}, and names are '
                'never used twice: choose another'
            ) from None

    try:
        made = _run(config, adding)
    except Problem as ex:
        return _failed('add', str(ex), as_json, key=None, secret=None)
    if as_json:
        _print_json('add', OK, None, key=document(made), secret=key)
        return OK
    print(f'Added the upload key {name}: {_limits(made)}.')
    print('Only its SHA-256 is kept: give the key below to its holder now, as')
    print('it cannot be shown again.')
    # NOTE: Alone on the last line, for `| tail -1`.
    print(key)
    return OK


def listing(
    *,
    storage: pathlib.Path | None = None,
    database_url: str | None = None,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Print every key, revoked ones too, in the order they were made."""
    config = _start('list', storage, database_url, environ)
    if config is None:
        return CANNOT_START
    try:
        keys = _run(config, lambda index: index.keys())
    except Problem as ex:
        return _failed('list', str(ex), as_json, keys=[])
    if as_json:
        _print_json('list', OK, None, keys=[document(key) for key in keys])
        return OK
    if not keys:
        print('No upload keys yet: asgilook keys add NAME makes one.')
        return OK
    _table(keys)
    revoked = sum(key.revoked is not None for key in keys)
    print(f'{len(keys)} keys, {revoked} of them revoked.')
    return OK


def revoke(
    name: str,
    *,
    storage: pathlib.Path | None = None,
    database_url: str | None = None,
    as_json: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Revoke the key ``name``; revoking it again is no error. The exit status."""
    config = _start('revoke', storage, database_url, environ)
    if config is None:
        return CANNOT_START

    async def revoking(index: Index) -> tuple[UploadKey, bool]:
        # NOTE: Looked up first: the index's clock (PostgreSQL's) is not
        #   this machine's, so the time it returns cannot tell a first revoke.
        before = next((key for key in await index.keys() if key.name == name), None)
        revoked = await index.revoke_key(name)
        if revoked is None:
            raise Problem(
                f'there is no upload key named {name} (asgilook keys list lists them)'
            )
        return revoked, before is not None and before.revoked is not None

    try:
        key, already = _run(config, revoking)
    except Problem as ex:
        return _failed('revoke', str(ex), as_json, key=None, already_revoked=False)
    if as_json:
        _print_json('revoke', OK, None, key=document(key), already_revoked=already)
        return OK
    when = moment(key.revoked or 0)
    if already:
        print(f'The upload key {name} was revoked already, at {when}.')
    else:
        print(f'Revoked the upload key {name} at {when}: it is refused from '
              'now on; its pictures stay.')  # fmt: skip
    return OK

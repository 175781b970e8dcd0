"""The upload keys and the URL secret of the index in SQLite.

Plain functions on a connection of :class:`~asgilook.storage.index.sqlite.SQLiteIndex`,
which runs them in its threads (and the changes in a writer's turn). A key's
``used`` is a column that the schema's triggers keep (see
:mod:`~asgilook.storage.index.sqlite_schema`): reading a key is one row.
"""

from __future__ import annotations

import sqlite3

from asgilook.storage.index import Entry
from asgilook.storage.index import KeyExists
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.index import UploadKey
from asgilook.storage.index.sqlite_schema import KEY_COLUMNS
from asgilook.storage.index.sqlite_schema import key


def add(connection: sqlite3.Connection, new: UploadKey, now: int) -> UploadKey:
    """Store ``new`` (made ``now`` if it says 0), its ``used`` counted here.

    Raises:
        KeyExists: its name, or its hash, is taken.
    """
    try:
        row = connection.execute(
            f'INSERT INTO upload_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, '
            '(SELECT coalesce(sum(bytes), 0) FROM images WHERE owner = ?)) '
            f'RETURNING {KEY_COLUMNS}',
            (new.name, new.key_hash, new.quota, new.rate, int(new.admin),
             new.created or now, new.revoked, new.name),
        ).fetchone()  # fmt: skip
    except sqlite3.IntegrityError as ex:
        raise KeyExists(
            f'There is a key named {new.name} already (or one with that '
            'secret): names are never used twice, even once revoked.'
        ) from ex
    return key(row)


def every(connection: sqlite3.Connection) -> list[UploadKey]:
    rows = connection.execute(f'SELECT {KEY_COLUMNS} FROM upload_keys ORDER BY seq')
    return [key(row) for row in rows]


def by_hash(connection: sqlite3.Connection, key_hash: str) -> UploadKey | None:
    row = connection.execute(
        f'SELECT {KEY_COLUMNS} FROM upload_keys WHERE key_hash = ?', (key_hash,)
    ).fetchone()
    return None if row is None else key(row)


def revoke(connection: sqlite3.Connection, name: str, now: int) -> UploadKey | None:
    row = connection.execute(
        'UPDATE upload_keys SET revoked = coalesce(revoked, ?) WHERE name = ? '
        f'RETURNING {KEY_COLUMNS}',
        (now, name),
    ).fetchone()
    return None if row is None else key(row)


def secret(connection: sqlite3.Connection) -> bytes:
    (found,) = connection.execute('SELECT secret FROM url_secret').fetchone()
    return bytes(found)


def set_secret(connection: sqlite3.Connection, new: bytes) -> None:
    connection.execute('UPDATE url_secret SET secret = ?', (new,))


def refused(connection: sqlite3.Connection, entry: Entry) -> QuotaExceeded | None:
    """Why ``entry`` may not be put now (over its owner's quota); None if it may.

    In the writer's transaction: what the puts before it in the same batch
    wrote counts already.
    """
    if not entry.owner:
        return None
    row = connection.execute(
        f'SELECT {KEY_COLUMNS} FROM upload_keys WHERE name = ?', (entry.owner,)
    ).fetchone()
    if row is None or row[2] is None:
        return None
    owner = key(row)
    assert owner.quota is not None
    current = connection.execute(
        'SELECT bytes FROM images WHERE id = ? AND owner = ?',
        (entry.image_id, entry.owner),
    ).fetchone()
    used = owner.used - (0 if current is None else current[0])
    if used + entry.bytes > owner.quota:
        return QuotaExceeded(owner, used, entry.bytes)
    return None

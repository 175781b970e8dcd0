"""The tables of the index in SQLite, their versions, and their rows.

The database's ``user_version`` is its schema's version; the first
connection that finds it behind :data:`SCHEMA_VERSION` brings it up to date
in one transaction (see :func:`migrate`), keeping every row. A database of a
newer asgilook is refused by :class:`~asgilook.storage.index.sqlite.SQLiteIndex`,
not misread.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

from asgilook.storage.index import PUBLIC
from asgilook.storage.index import Entry
from asgilook.storage.index import UploadKey

SCHEMA_VERSION = 4

#: The statements that make a database of each schema version from the one
#: before. Each runs in the transaction that moves ``user_version`` on.
_MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS images (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    file TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    token_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (deleted);
CREATE TABLE IF NOT EXISTS counters (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    clock INTEGER NOT NULL,
    images INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS adopted (source TEXT PRIMARY KEY);
""",
    2: """
ALTER TABLE images ADD COLUMN placeholder TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN animated INTEGER NOT NULL DEFAULT 0;
""",
    # NOTE: {deployment} is a new random id, in hex, whoever makes the table.
    3: """
CREATE TABLE IF NOT EXISTS deployment (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id TEXT NOT NULL
);
INSERT OR IGNORE INTO deployment VALUES (1, '{deployment}');
""",
    # NOTE: The listings by visibility and by owner are each one range of an
    #   index in upload order: the public one holds public rows only, so a
    #   page of them never steps over the others one by one. A key's `used`
    #   is kept by the triggers, whatever changes the images: reading it is
    #   one row. {secret} is 32 new random bytes, in hex.
    4: """
ALTER TABLE images ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
ALTER TABLE images ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN original TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS images_public ON images (seq)
WHERE visibility = 'public';
CREATE INDEX IF NOT EXISTS images_by_owner ON images (owner, seq);
CREATE TABLE IF NOT EXISTS upload_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    quota INTEGER,
    rate INTEGER,
    admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    revoked INTEGER,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER IF NOT EXISTS images_owner_added AFTER INSERT ON images
WHEN NEW.owner <> '' BEGIN
    UPDATE upload_keys SET used = used + NEW.bytes WHERE name = NEW.owner;
END;
CREATE TRIGGER IF NOT EXISTS images_owner_removed AFTER DELETE ON images
WHEN OLD.owner <> '' BEGIN
    UPDATE upload_keys SET used = used - OLD.bytes WHERE name = OLD.owner;
END;
CREATE TRIGGER IF NOT EXISTS images_owner_changed
AFTER UPDATE OF owner, bytes ON images BEGIN
    UPDATE upload_keys SET used = used - OLD.bytes WHERE name = OLD.owner;
    UPDATE upload_keys SET used = used + NEW.bytes WHERE name = NEW.owner;
END;
CREATE TABLE IF NOT EXISTS url_secret (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    secret BLOB NOT NULL
);
INSERT OR IGNORE INTO url_secret VALUES (1, X'{secret}');
""",
}

COLUMNS = (
    'id, file, width, height, modified, token_hash, placeholder, animated, '
    'name, visibility, owner, bytes, original'
)
KEY_COLUMNS = 'name, key_hash, quota, rate, admin, created, revoked, used'


def statements(script: str) -> Iterator[str]:
    """The statements of ``script``, one at a time (a trigger's body whole)."""
    pending = ''
    for piece in script.split(';'):
        pending += piece + ';'
        if sqlite3.complete_statement(pending):
            if pending.strip(' \n;'):
                yield pending
            pending = ''


def migrate(connection: sqlite3.Connection, version: int) -> None:
    """Bring a database of schema ``version`` up to :data:`SCHEMA_VERSION`.

    In the caller's transaction: a database is migrated whole or not at all.
    """
    for step in range(version + 1, SCHEMA_VERSION + 1):
        script = (
            _MIGRATIONS[step]
            .replace('{deployment}', uuid.uuid4().hex)
            .replace('{secret}', os.urandom(32).hex())
        )
        for statement in statements(script):
            connection.execute(statement)
    connection.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')


def page_query(owner: str | None, everyone: bool, newest_first: bool) -> str:
    """A page's query (see Index.page): its parameters are the ``owner`` if
    given, the ``seq`` to follow, and the limit.

    NOTE: The visibility is written out, not a parameter: only then does
    SQLite know that the index of public rows holds every row the page needs.
    """
    if owner is not None:
        which = 'owner = ? AND'
    else:
        which = '' if everyone else f"visibility = '{PUBLIC}' AND"
    order = 'seq < ? ORDER BY seq DESC' if newest_first else 'seq > ? ORDER BY seq'
    return f'SELECT {COLUMNS} FROM images WHERE {which} {order} LIMIT ?'


def entry(row: tuple[Any, ...]) -> Entry:
    """The entry of a row of :data:`COLUMNS`."""
    (image_id, file, width, height, modified, token_hash, placeholder, animated,
     name, visibility, owner, size, original) = row  # fmt: skip
    return Entry(
        image_id,
        file,
        (width, height),
        modified,
        token_hash,
        placeholder,
        bool(animated),
        name,
        visibility,
        owner,
        size,
        original,
    )


def insert(connection: sqlite3.Connection, entry: Entry) -> None:
    """Write ``entry`` as a new row of ``images``."""
    width, height = entry.size
    connection.execute(
        f'INSERT INTO images ({COLUMNS}) '
        'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (entry.image_id, entry.file, width, height, entry.modified,
         entry.token_hash, entry.placeholder, int(entry.animated), entry.name,
         entry.visibility, entry.owner, entry.bytes, entry.original),
    )  # fmt: skip


def key(row: tuple[Any, ...]) -> UploadKey:
    """The key of a row of :data:`KEY_COLUMNS`."""
    name, key_hash, quota, rate, admin, created, revoked, used = row
    return UploadKey(name, key_hash, quota, rate, bool(admin), created, revoked, used)

"""The index's tables in PostgreSQL, their version, and how they are made.

The database records its schema's version in ``asgilook_schema``; the first
worker to use a database creates the tables, or brings older ones up to
:data:`SCHEMA_VERSION`. A database set up by a newer asgilook is refused
(:class:`NewerSchema`) rather than misread.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from asgilook.storage.index import NewerSchema
from asgilook.storage.index import newer_schema

__all__ = ['SCHEMA_LOCK', 'SCHEMA_VERSION', 'NewerSchema', 'create_schema']

SCHEMA_VERSION = 4
#: The key of the advisory lock taken while the schema is created: "asgilook".
SCHEMA_LOCK = int.from_bytes(b'asgilook', 'big')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    file text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    modified bigint NOT NULL,
    token_hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    id text PRIMARY KEY,
    seq bigint NOT NULL,
    deleted bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (deleted);
CREATE TABLE IF NOT EXISTS counters (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    clock bigint NOT NULL,
    images bigint NOT NULL
);
INSERT INTO counters VALUES (true, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS adopted (source text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS asgilook_schema (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
"""
#: What version 2 added: placeholders, and animated renditions.
_SCHEMA_2 = """
ALTER TABLE images ADD COLUMN IF NOT EXISTS placeholder text NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN IF NOT EXISTS animated boolean NOT NULL DEFAULT false;
"""
#: What version 3 added: the deployment's id, made once (see Index.deployment).
_SCHEMA_3 = """
CREATE TABLE IF NOT EXISTS deployment (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    id text NOT NULL
);
"""
_DEPLOYMENT = 'INSERT INTO deployment VALUES (true, $1) ON CONFLICT DO NOTHING'
#: What version 4 added: names, visibility, owners and their bytes, the
#: format of the original kept as uploaded; upload
#: keys, whose ``used`` the triggers keep (reading a key is one row); and the
#: secret of signed URLs, made once (see Index.url_secret).
#:
#: NOTE: The listings by visibility and by owner are each one range of an
#: index in upload order: the public one holds public rows only, so a page of
#: them never steps over the others one by one.
_SCHEMA_4 = """
ALTER TABLE images ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '';
ALTER TABLE images
    ADD COLUMN IF NOT EXISTS visibility text NOT NULL DEFAULT 'public';
ALTER TABLE images ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN IF NOT EXISTS bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE images ADD COLUMN IF NOT EXISTS original text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS images_public ON images (seq)
WHERE visibility = 'public';
CREATE INDEX IF NOT EXISTS images_by_owner ON images (owner, seq);
CREATE TABLE IF NOT EXISTS upload_keys (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    key_hash text NOT NULL UNIQUE,
    quota bigint,
    rate integer,
    admin boolean NOT NULL DEFAULT false,
    created bigint NOT NULL,
    revoked bigint,
    used bigint NOT NULL DEFAULT 0
);
CREATE OR REPLACE FUNCTION asgilook_key_used() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE upload_keys SET used = used - OLD.bytes WHERE name = OLD.owner;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE upload_keys SET used = used + NEW.bytes WHERE name = NEW.owner;
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS images_owner_added ON images;
CREATE TRIGGER images_owner_added AFTER INSERT ON images
FOR EACH ROW WHEN (NEW.owner <> '') EXECUTE FUNCTION asgilook_key_used();
DROP TRIGGER IF EXISTS images_owner_removed ON images;
CREATE TRIGGER images_owner_removed AFTER DELETE ON images
FOR EACH ROW WHEN (OLD.owner <> '') EXECUTE FUNCTION asgilook_key_used();
DROP TRIGGER IF EXISTS images_owner_changed ON images;
CREATE TRIGGER images_owner_changed AFTER UPDATE OF owner, bytes ON images
FOR EACH ROW EXECUTE FUNCTION asgilook_key_used();
CREATE TABLE IF NOT EXISTS url_secret (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    secret bytea NOT NULL
);
"""
_URL_SECRET = 'INSERT INTO url_secret VALUES (true, $1) ON CONFLICT DO NOTHING'


async def create_schema(connection: Any) -> None:
    """Create the tables, or check that the database's are ones we know.

    NOTE: Under an advisory lock: ``CREATE TABLE IF NOT EXISTS`` is not safe
    against itself in another session (both may find no table and create
    it), and every worker of every machine may start at the same moment.
    """
    async with connection.transaction():
        await connection.execute('SELECT pg_advisory_xact_lock($1)', SCHEMA_LOCK)
        version: int = 0
        if await connection.fetchval("SELECT to_regclass('asgilook_schema')"):
            version = await connection.fetchval('SELECT version FROM asgilook_schema')
        if version > SCHEMA_VERSION:
            raise newer_schema('the database', version, SCHEMA_VERSION)
        if version < SCHEMA_VERSION:
            # NOTE: Every step is harmless on a database that has it already.
            await connection.execute(_SCHEMA)
            await connection.execute(_SCHEMA_2)
            await connection.execute(_SCHEMA_3)
            await connection.execute(_DEPLOYMENT, uuid.uuid4().hex)
            await connection.execute(_SCHEMA_4)
            await connection.execute(_URL_SECRET, os.urandom(32))
            await connection.execute(
                'INSERT INTO asgilook_schema VALUES (true, $1) '
                'ON CONFLICT (one) DO UPDATE SET version = excluded.version',
                SCHEMA_VERSION,
            )

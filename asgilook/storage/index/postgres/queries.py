"""Every statement of the index in PostgreSQL but the schema's, and its rows.

Reads are single statements, each one snapshot. Changes first move on the
``counters`` row (its lock makes writers take turns, and its clock never goes
back) and notify the :data:`CHANNEL` with the id of what changed, which
every index's listener hears once the change has committed (see
:mod:`asgilook.storage.index.postgres.listener`). Puts go through
``pg_temp.asgilook_put``, a function each session of the pool gets when it
opens (see :mod:`asgilook.storage.index.postgres.writer`).
"""

from __future__ import annotations

from typing import Any

from asgilook.storage.index import PUBLIC
from asgilook.storage.index import Entry
from asgilook.storage.index import UploadKey

#: The channel every change notifies, with the id of the image it changed
#: (or nothing: anything may have changed).
CHANNEL = 'asgilook_index'
#: How long a deleted image stays a cursor to page on from.
TOMBSTONE_MICROSECONDS = 7 * 24 * 3600 * 1_000_000

_COLUMNS = (
    'id, file, width, height, modified, token_hash, placeholder, animated, '
    'name, visibility, owner, bytes, original'
)
_NOW = '(extract(epoch FROM clock_timestamp()) * 1000000)::bigint'

# NOTE: The first statement of a deletion (and of the put function below):
#   the counters row is locked until the change commits, so changes take
#   turns; and the clock never goes back, even if the database server's
#   clock does.
_TICK = f"""
UPDATE counters SET clock = greatest(clock + 1, {_NOW})
RETURNING clock, pg_notify('{CHANNEL}', $1::text)
"""

# NOTE: The quotas of a batch's owners, in the put function: each key's
#   usage (its row locked, in the order of the names) is followed through the
#   batch in its order, as each put would change it (a version replaced
#   frees its bytes from its owner's usage), and a put that would take its
#   owner over the quota is refused alone. The rows are written after, all
#   at once: the triggers then bring each key's `used` to what was followed.
_QUOTA_VARIABLES = """
    v_names text[];
    v_used bigint[];
    v_quotas bigint[];
    v_at integer;
    v_before bigint;
    v_put record;
"""
_QUOTAS = """
        PERFORM FROM counters FOR UPDATE;
        SELECT array_agg(key.name), array_agg(key.used), array_agg(key.quota)
        INTO v_names, v_used, v_quotas
        FROM (SELECT name, used, quota FROM upload_keys
              WHERE name = ANY(p_owners) AND quota IS NOT NULL
              ORDER BY name FOR UPDATE) AS key;
        FOR v_put IN
            SELECT put.position::integer AS position, put.id, put.owner,
                   put.bytes, was.owner AS old_owner, was.bytes AS old_bytes
            FROM unnest(p_ids, p_owners, p_bytes) WITH ORDINALITY
                 AS put (id, owner, bytes, position)
            LEFT JOIN images AS was ON was.id = put.id
            ORDER BY put.position
        LOOP
            v_at := array_position(v_names, v_put.owner);
            IF v_at IS NOT NULL THEN
                v_before := v_used[v_at] - CASE
                    WHEN v_put.old_owner = v_put.owner THEN v_put.old_bytes
                    ELSE 0 END;
                IF v_before + v_put.bytes > v_quotas[v_at] THEN
                    v_keep[v_put.position] := false;
                    RETURN QUERY SELECT v_put.id, NULL::text, NULL::integer,
                        NULL::integer, NULL::bigint, NULL::text, NULL::text,
                        NULL::boolean, NULL::text, NULL::text, v_put.owner,
                        v_before, NULL::text, true;
                    CONTINUE;
                END IF;
                v_used[v_at] := v_used[v_at] + v_put.bytes;
            END IF;
            v_at := array_position(v_names, v_put.old_owner);
            IF v_at IS NOT NULL THEN
                v_used[v_at] := v_used[v_at] - v_put.old_bytes;
            END IF;
        END LOOP;
"""

# NOTE: A batch of puts (see PostgresIndex.put) in one call: a function of
#   each session (in pg_temp, made when the pool opens a connection: nothing
#   is added to the database). Called on its own, the call is a transaction,
#   committed before its answer comes: one round trip while the counters row
#   is held, where a transaction of statements took five. In READ COMMITTED,
#   each statement in it sees what committed before the statement began: so,
#   after the tick, what the writer before this one did. A batch never has
#   an id twice: the versions it replaces are taken first, then its rows go
#   in, in its order. The last row returned carries the newest time only.
#
#   Puts with an owner first have their quotas checked (see _QUOTAS), with
#   the counters row taken first, as every change does: then the keys' rows,
#   so that no two changes ever wait for each other's rows. A put refused
#   comes back as a row of its own (r_refused, with what its owner's other
#   pictures hold in r_bytes), and is left out of the rest: no row, no tick.
_PUT_FUNCTION = f"""
CREATE FUNCTION pg_temp.asgilook_put(
    p_ids text[], p_files text[], p_widths integer[], p_heights integer[],
    p_token_hashes text[], p_placeholders text[], p_animated boolean[],
    p_names text[], p_visibilities text[], p_owners text[], p_bytes bigint[],
    p_originals text[]
) RETURNS TABLE (
    r_id text, r_file text, r_width integer, r_height integer,
    r_modified bigint, r_token_hash text, r_placeholder text, r_animated boolean,
    r_name text, r_visibility text, r_owner text, r_bytes bigint,
    r_original text, r_refused boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_keep boolean[] := array_fill(true, ARRAY[cardinality(p_ids)]);
    v_ids text[] := p_ids;
    v_count integer;
    v_newest bigint;
    v_replaced integer;
{_QUOTA_VARIABLES}
BEGIN
    IF EXISTS (SELECT FROM unnest(p_owners) AS owner WHERE owner <> '') THEN
{_QUOTAS}
        SELECT coalesce(array_agg(put.id ORDER BY put.position), '{{}}')
        INTO v_ids
        FROM unnest(p_ids, v_keep) WITH ORDINALITY AS put (id, keep, position)
        WHERE put.keep;
    END IF;
    v_count := cardinality(v_ids);
    IF v_count = 0 THEN
        RETURN;
    END IF;
    UPDATE counters SET clock = greatest(clock + v_count, {_NOW} + v_count - 1)
    RETURNING clock INTO v_newest;
    PERFORM pg_notify('{CHANNEL}', id) FROM unnest(v_ids) AS id;
    RETURN QUERY DELETE FROM images WHERE id = ANY(v_ids)
    RETURNING {_COLUMNS}, false;
    GET DIAGNOSTICS v_replaced = ROW_COUNT;
    DELETE FROM tombstones WHERE id = ANY(v_ids);
    INSERT INTO images ({_COLUMNS})
    SELECT put.id, put.file, put.width, put.height,
           v_newest - v_count + row_number() OVER (ORDER BY put.position),
           put.token_hash, put.placeholder, put.animated, put.name,
           put.visibility, put.owner, put.bytes, put.original
    FROM unnest(p_ids, p_files, p_widths, p_heights, p_token_hashes,
                p_placeholders, p_animated, p_names, p_visibilities, p_owners,
                p_bytes, p_originals, v_keep)
         WITH ORDINALITY AS put (id, file, width, height, token_hash,
                                 placeholder, animated, name, visibility, owner,
                                 bytes, original, keep, position)
    WHERE put.keep
    ORDER BY put.position;
    UPDATE counters SET images = images + v_count - v_replaced;
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, NULL::integer,
                        v_newest, NULL::text, NULL::text, NULL::boolean,
                        NULL::text, NULL::text, NULL::text, NULL::bigint,
                        NULL::text, NULL::boolean;
END
$$
"""
_PUT = """
SELECT r_id AS id, r_file AS file, r_width AS width, r_height AS height,
       r_modified AS modified, r_token_hash AS token_hash,
       r_placeholder AS placeholder, r_animated AS animated, r_name AS name,
       r_visibility AS visibility, r_owner AS owner, r_bytes AS bytes,
       r_original AS original, r_refused AS refused
FROM pg_temp.asgilook_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_FIND_FOR_DELETE = f'SELECT seq, {_COLUMNS} FROM images WHERE id = $1 FOR UPDATE'
_BURY = """
WITH gone AS (DELETE FROM images WHERE id = $1),
     counted AS (UPDATE counters SET images = images - 1),
     expired AS (DELETE FROM tombstones WHERE deleted < $4 AND id <> $1)
INSERT INTO tombstones (id, seq, deleted) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted
"""
_ADOPT_ONCE = """
INSERT INTO adopted (source) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true
"""
# NOTE: In the given order, so that seq follows it; an image the index has
#   already is left alone.
_ADOPT = f"""
INSERT INTO images ({_COLUMNS})
SELECT {_COLUMNS}
FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[],
            $5::bigint[], $6::text[], $7::text[], $8::boolean[], $9::text[],
            $10::text[], $11::text[], $12::bigint[], $13::text[])
     WITH ORDINALITY AS adopted ({_COLUMNS}, position)
ORDER BY position
ON CONFLICT (id) DO NOTHING
RETURNING id, modified
"""
# NOTE: One notification without an id for all of them: "anything may have
#   changed" (an adoption may bring thousands).
_ADOPTED = f"""
WITH unburied AS (DELETE FROM tombstones WHERE id = ANY($1::text[]))
UPDATE counters
SET clock = greatest(clock + 1, coalesce(nullif($3::bigint, 0), {_NOW})),
    images = images + $2
RETURNING pg_notify('{CHANNEL}', '')
"""

_GET = f'SELECT {_COLUMNS} FROM images WHERE id = $1'
_PUBLIC = f"visibility = '{PUBLIC}' AND"
_OF_OWNER = 'owner = $3 AND'


def _page_query(order: str, after: str, start: int, which: str = _PUBLIC) -> str:
    """A page following the image ``$1`` (or the start), up to ``$2`` rows.

    One statement, so that finding the cursor and reading the page are one
    snapshot. It always returns a row: one with a null ``cursor`` says there
    is no image ``$1``; one with a null ``id``, that the page is empty.
    ``which`` rows it lists: the public ones, the owner ``$3``'s, or all.

    NOTE: The visibility is written out, not a parameter: only then does the
    planner know that the index of public rows holds every row the page needs.
    """
    return f"""
    WITH cursor AS (
        SELECT CASE WHEN $1::text IS NULL THEN {start}::bigint ELSE coalesce(
            (SELECT seq FROM images WHERE id = $1),
            (SELECT seq FROM tombstones WHERE id = $1)
        ) END AS seq
    )
    SELECT cursor.seq AS cursor, page.*
    FROM cursor LEFT JOIN LATERAL (
        SELECT {_COLUMNS} FROM images
        WHERE {which} seq {after} cursor.seq ORDER BY seq {order} LIMIT $2::bigint
    ) AS page ON true
    """


_PAGE = _page_query('ASC', '>', 0)
_PAGE_NEWEST_FIRST = _page_query('DESC', '<', 2**63 - 1)
_PAGE_OF_OWNER = _page_query('ASC', '>', 0, _OF_OWNER)
_PAGE_OF_OWNER_NEWEST_FIRST = _page_query('DESC', '<', 2**63 - 1, _OF_OWNER)
_PAGE_OF_EVERYONE = _page_query('ASC', '>', 0, '')
_PAGE_OF_EVERYONE_NEWEST_FIRST = _page_query('DESC', '<', 2**63 - 1, '')

# Upload keys, and the URL secret.

_KEY_COLUMNS = 'name, key_hash, quota, rate, admin, created, revoked, used'
# NOTE: After the counters row is taken (see PostgresIndex.add_key), in a
#   statement of its own: its snapshot then has every put of this owner.
_ADD_KEY = f"""
INSERT INTO upload_keys ({_KEY_COLUMNS})
VALUES ($1, $2, $3, $4, $5, coalesce(nullif($6::bigint, 0), {_NOW}), $7,
        (SELECT coalesce(sum(bytes), 0) FROM images WHERE owner = $1))
RETURNING {_KEY_COLUMNS}
"""
_KEYS = f'SELECT {_KEY_COLUMNS} FROM upload_keys ORDER BY seq'
_KEY_BY_HASH = f'SELECT {_KEY_COLUMNS} FROM upload_keys WHERE key_hash = $1'
_KEY_BY_NAME = f'SELECT {_KEY_COLUMNS} FROM upload_keys WHERE name = $1'
_REVOKE_KEY = f"""
UPDATE upload_keys SET revoked = coalesce(revoked, {_NOW}) WHERE name = $1
RETURNING {_KEY_COLUMNS}
"""
_URL_SECRET = 'SELECT secret FROM url_secret'
_SET_URL_SECRET = 'UPDATE url_secret SET secret = $1'


def _entry(row: Any) -> Entry:
    """The entry of a row with the columns of ``_COLUMNS``."""
    return Entry(
        row['id'],
        row['file'],
        (row['width'], row['height']),
        row['modified'],
        row['token_hash'],
        row['placeholder'],
        row['animated'],
        row['name'],
        row['visibility'],
        row['owner'],
        row['bytes'],
        row['original'],
    )


def _key(row: Any) -> UploadKey:
    """The key of a row with the columns of ``_KEY_COLUMNS``."""
    return UploadKey(*row.values())

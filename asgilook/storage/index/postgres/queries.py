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

from asgilook.storage.index import Entry

#: The channel every change notifies, with the id of the image it changed
#: (or nothing: anything may have changed).
CHANNEL = 'asgilook_index'
#: How long a deleted image stays a cursor to page on from.
TOMBSTONE_MICROSECONDS = 7 * 24 * 3600 * 1_000_000

_COLUMNS = 'id, file, width, height, modified, token_hash, placeholder, animated'
_NOW = '(extract(epoch FROM clock_timestamp()) * 1000000)::bigint'

# NOTE: The first statement of a deletion (and of the put function below):
#   the counters row is locked until the change commits, so changes take
#   turns; and the clock never goes back, even if the database server's
#   clock does.
_TICK = f"""
UPDATE counters SET clock = greatest(clock + 1, {_NOW})
RETURNING clock, pg_notify('{CHANNEL}', $1::text)
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
_PUT_FUNCTION = f"""
CREATE FUNCTION pg_temp.asgilook_put(
    p_ids text[], p_files text[], p_widths integer[], p_heights integer[],
    p_token_hashes text[], p_placeholders text[], p_animated boolean[]
) RETURNS TABLE (
    r_id text, r_file text, r_width integer, r_height integer,
    r_modified bigint, r_token_hash text, r_placeholder text, r_animated boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := cardinality(p_ids);
    v_newest bigint;
    v_replaced integer;
BEGIN
    UPDATE counters SET clock = greatest(clock + v_count, {_NOW} + v_count - 1)
    RETURNING clock INTO v_newest;
    PERFORM pg_notify('{CHANNEL}', id) FROM unnest(p_ids) AS id;
    RETURN QUERY DELETE FROM images WHERE id = ANY(p_ids) RETURNING {_COLUMNS};
    GET DIAGNOSTICS v_replaced = ROW_COUNT;
    DELETE FROM tombstones WHERE id = ANY(p_ids);
    INSERT INTO images ({_COLUMNS})
    SELECT put.id, put.file, put.width, put.height,
           v_newest - v_count + put.position, put.token_hash, put.placeholder,
           put.animated
    FROM unnest(p_ids, p_files, p_widths, p_heights, p_token_hashes,
                p_placeholders, p_animated)
         WITH ORDINALITY AS put (id, file, width, height, token_hash,
                                 placeholder, animated, position)
    ORDER BY put.position;
    UPDATE counters SET images = images + v_count - v_replaced;
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, NULL::integer,
                        v_newest, NULL::text, NULL::text, NULL::boolean;
END
$$
"""
_PUT = """
SELECT r_id AS id, r_file AS file, r_width AS width, r_height AS height,
       r_modified AS modified, r_token_hash AS token_hash,
       r_placeholder AS placeholder, r_animated AS animated
FROM pg_temp.asgilook_put($1, $2, $3, $4, $5, $6, $7)
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
            $5::bigint[], $6::text[], $7::text[], $8::boolean[])
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


def _page_query(order: str, after: str, start: int) -> str:
    """A page following the image ``$1`` (or the start), up to ``$2`` rows.

    One statement, so that finding the cursor and reading the page are one
    snapshot. It always returns a row: one with a null ``cursor`` says there
    is no image ``$1``; one with a null ``id``, that the page is empty.
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
        WHERE seq {after} cursor.seq ORDER BY seq {order} LIMIT $2::bigint
    ) AS page ON true
    """


_PAGE = _page_query('ASC', '>', 0)
_PAGE_NEWEST_FIRST = _page_query('DESC', '<', 2**63 - 1)


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
    )

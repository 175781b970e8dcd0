"""The index benchmark's data: phase 1, and the old journal's first page (2, 3).

The same synthetic images (uuid4 ids, versioned file names, 64-hex token
hashes; no picture files, which listings never read) go into a SQLite index,
a PostgreSQL one if there is a server, and the previous release's
``journal.jsonl``, written with that release's own functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from types import ModuleType

from asgilook.storage.index import Index
from asgilook.storage.index.sqlite import SQLiteIndex
from bench.common import BenchError
from bench.common import progress
from bench.index_setup import PAGE
from bench.index_setup import SEED
from bench.index_setup import SMALL
from bench.index_setup import Bench
from bench.index_setup import JournalLoad
from bench.index_setup import OldRelease
from bench.index_setup import environment
from bench.index_setup import short

# One row of the index: seq, id, file, width, height, modified, token_hash.
Row = tuple[int, str, str, int, int, int, str]
COLUMNS = ('seq', 'id', 'file', 'width', 'height', 'modified', 'token_hash')

# NOTE: Run in a new process: the old journal, from its own module, loaded
#   whole by its first page, as a new worker of the previous release did.
JOURNAL_SCRIPT = """
import json, pathlib, sys, time
import psutil
sys.path.insert(0, sys.argv[1])
import old_journal
process = psutil.Process()
before = process.memory_info().rss
started = time.perf_counter()
journal = old_journal.Journal(pathlib.Path(sys.argv[2]))
page = journal.page(limit=100)
seconds = time.perf_counter() - started
after = process.memory_info().rss
print(json.dumps({'seconds': seconds, 'before': before, 'after': after,
                  'entries': len(page), 'count': journal.count()}))
"""


# Synthetic images


def synthetic(count: int, seed: int) -> list[Row]:
    """``count`` index rows in upload order, each a microsecond after the last.

    The newest is a little older than now, so that an upload comes after it.
    """
    rng = random.Random(seed)
    ids = rng.randbytes(16 * count).hex()
    versions = rng.randbytes(6 * count).hex()
    tokens = rng.randbytes(32 * count).hex()
    variant = '89ab' * 4
    start = time.time_ns() // 1000 - count - 1_000_000
    rows = []
    for number in range(count):
        hexa = ids[32 * number : 32 * number + 32]
        # A version 4 uuid: its version and variant bits set.
        image_id = (
            f'{hexa[:8]}-{hexa[8:12]}-4{hexa[13:16]}-'
            f'{variant[int(hexa[16], 16)]}{hexa[17:20]}-{hexa[20:]}'
        )
        file = f'{image_id}.{versions[12 * number : 12 * number + 12]}.jpeg'
        token = tokens[64 * number : 64 * number + 64]
        rows.append((number + 1, image_id, file, 4000, 3000, start + number, token))
    return rows


def _ids(rows: Sequence[Row]) -> list[str]:
    return [row[1] for row in rows]


async def _create_schema(index: Index) -> None:
    """Let the index create its schema, as a first request would."""
    try:
        await index.count()
    finally:
        await index.close()


def build_sqlite(root: pathlib.Path, rows: Sequence[Row]) -> float:
    """The seconds to create ``root``'s SQLite index and insert ``rows``."""
    started = time.perf_counter()
    asyncio.run(_create_schema(SQLiteIndex(root)))
    connection = sqlite3.connect(root / SQLiteIndex.FILE, isolation_level=None)
    try:
        # NOTE: A page cache that holds the whole id index, for the build only:
        #   the ids are random, so each insert lands anywhere in it.
        connection.execute('PRAGMA cache_size = -1048576')
        connection.execute('BEGIN IMMEDIATE')
        connection.executemany(
            f'INSERT INTO images ({", ".join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)',
            rows,
        )
        connection.execute(
            'UPDATE counters SET clock = ?, images = ?', (rows[-1][5], len(rows))
        )
        connection.execute('COMMIT')
        # NOTE: Everything into the database file, and the WAL emptied: a
        #   reader would otherwise look through the whole build's WAL.
        connection.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    finally:
        connection.close()
    return time.perf_counter() - started


async def _build_postgres(url: str, rows: Sequence[Row]) -> None:
    import asyncpg

    from asgilook.storage.index.postgres import PostgresIndex

    await _create_schema(PostgresIndex(url))
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            # NOTE: COPY writes the given seq, identity column or not; the
            #   identity then goes on after the last one.
            await connection.copy_records_to_table(
                'images', records=rows, columns=COLUMNS
            )
            await connection.execute(
                "SELECT setval(pg_get_serial_sequence('images', 'seq'), $1)",
                rows[-1][0],
            )
            await connection.execute(
                'UPDATE counters SET clock = $1, images = $2', rows[-1][5], len(rows)
            )
        # NOTE: Now rather than by autovacuum in the middle of a measurement.
        await connection.execute('VACUUM (ANALYZE) images')
    finally:
        await connection.close()


def build_postgres(url: str, rows: Sequence[Row]) -> float:
    """The seconds to create the database's index and copy ``rows`` into it."""
    started = time.perf_counter()
    asyncio.run(_build_postgres(url, rows))
    return time.perf_counter() - started


def build_journal(root: pathlib.Path, rows: Sequence[Row], old: ModuleType) -> float:
    """The seconds to write the previous release's ``journal.jsonl`` of ``rows``."""
    started = time.perf_counter()
    lines = (
        old._line(old._put_record(old.Entry(image_id, file, (width, height),
                                            modified, token)))
        for _, image_id, file, width, height, modified, token in rows
    )  # fmt: skip
    with open(root / old.Journal.FILE, 'wb') as journal:
        journal.write(old._header())
        journal.writelines(lines)
    return time.perf_counter() - started


def journal_first_page(old: OldRelease, root: pathlib.Path, count: int) -> JournalLoad:
    """The old journal's first page in a new process: seconds, RSS growth."""
    done = subprocess.run(
        [sys.executable, '-c', JOURNAL_SCRIPT, str(old.journal_dir), str(root)],
        env=environment(),
        cwd=old.journal_dir,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f'The old journal did not load:\n{done.stderr.strip()}')
    found = json.loads(done.stdout)
    if found['entries'] != PAGE or found['count'] != count:
        raise BenchError(
            f'The old journal gave a page of {found["entries"]}, and '
            f'{found["count"]:,} images rather than {count:,}'
        )
    return JournalLoad(found['seconds'], found['after'] - found['before'])


# The phases


def build(run: Bench) -> None:
    """1: the indexes, and the old journal, of the same synthetic images."""
    progress(f'1. Building the indexes of {run.big} and {run.small} images ...')
    rows = {
        run.large: synthetic(run.large, SEED),
        SMALL: synthetic(SMALL, SEED + 1),
    }
    run.ids = {count: _ids(found) for count, found in rows.items()}
    seconds: dict[tuple[str, int], float] = {}
    for count, found in rows.items():
        run.sqlite_root(count).mkdir()
        seconds['SQLite', count] = build_sqlite(run.sqlite_root(count), found)
    if run.postgres is not None:
        try:
            for count, found in rows.items():
                run.databases[count] = run.postgres.database()
                seconds['PostgreSQL', count] = build_postgres(
                    run.databases[count], found
                )
        except Exception as ex:  # Whatever failed: skipped, and said why.
            run.notes.append(
                f'The PostgreSQL rows are skipped: building its index failed '
                f'({type(ex).__name__}: {ex}).'
            )
            run.postgres = None
    journal = None
    run.journal_root.mkdir()
    if run.old is not None:
        journal = build_journal(run.journal_root, rows[run.large], run.old.journal)
    del rows
    os.sync()
    run.raw['build'] = {
        'journal': journal,
        **{f'{backend} {count}': value for (backend, count), value in seconds.items()},
    }
    for backend in run.backends():
        for count in (run.large, SMALL):
            run.add(
                f'build_{backend}_{count}',
                f'build, {backend}, {short(count)} images',
                's',
                seconds[backend, count],
                journal if count == run.large else None,
                f'journal {run.big}',
            )


def old_journal(run: Bench) -> None:
    """2 and 3: the old journal's first page, in a new process."""
    if run.old is not None:
        progress(f'2. The old journal of {run.big} images: its first page ...')
        run.journal = journal_first_page(run.old, run.journal_root, run.large)
        run.raw['journal_first_page'] = dataclasses.asdict(run.journal)

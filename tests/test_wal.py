"""The WAL index's header, read from shared memory (asgilook.storage.index.wal)."""

import asyncio
import sqlite3
import subprocess
import sys

from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.index.wal import HEADER_SIZE
from asgilook.storage.index.wal import WalHeader


def wal_database(path):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute('PRAGMA journal_mode = WAL')
    connection.execute('CREATE TABLE t (x)')
    return connection


def test_the_header_changes_with_every_commit_of_any_connection(tmp_path):
    path = str(tmp_path / 'db.sqlite3')
    reader = wal_database(path)
    reader.execute('SELECT * FROM t').fetchall()
    header = WalHeader(path)
    seen = [header.read()]
    writer = sqlite3.connect(path, isolation_level=None)
    for value in range(3):
        assert header.read() == seen[-1]  # Nothing committed: the same.
        writer.execute('INSERT INTO t VALUES (?)', (value,))
        seen.append(header.read())
    assert None not in seen
    assert len(set(seen)) == len(seen)
    # A checkpoint that starts the WAL again changes it too.
    writer.execute('PRAGMA wal_checkpoint(TRUNCATE)')
    writer.execute('INSERT INTO t VALUES (9)')
    assert header.read() not in seen
    header.close()
    header.close()


def test_no_header_without_a_wal_index_in_use(tmp_path):
    path = str(tmp_path / 'db.sqlite3')
    rollback = sqlite3.connect(path, isolation_level=None)
    rollback.execute('CREATE TABLE t (x)')
    assert WalHeader(path).read() is None  # Not in WAL mode: no -shm.
    shm = tmp_path / 'db.sqlite3-shm'
    shm.write_bytes(bytes(HEADER_SIZE))
    assert WalHeader(path).read() is None  # Shorter than both copies.
    copy = bytearray(HEADER_SIZE)
    copy[12] = 1
    shm.write_bytes(bytes(copy) + bytes(HEADER_SIZE))
    assert WalHeader(path).read() is None  # Copies differ: being written.
    shm.write_bytes(bytes(2 * HEADER_SIZE))
    assert WalHeader(path).read() is None  # Not initialised.
    shm.write_bytes(2 * bytes(copy))
    assert WalHeader(path).read() == 2 * bytes(copy)


def test_the_fast_path_sees_what_another_process_committed(tmp_path, png_image):
    """Another index on the same file (as another worker's) changes what
    peek() says at once, though peek() last read it from memory."""

    async def run():
        here = SQLiteIndex(tmp_path)
        there = SQLiteIndex(tmp_path)
        image_id = '36562622-48e5-4a61-be67-e426b11821ed'
        await here.count()
        await there.count()
        assert here.peek(image_id) is None
        assert here.peek(image_id) is None  # From memory, the header unchanged.
        await there.put(image_id, 'a.jpeg', (4, 3), 'f' * 64)
        assert here.peek(image_id).file == 'a.jpeg'
        state = here.state()
        await there.put(image_id, 'b.jpeg', (4, 3), 'f' * 64)
        assert here.peek(image_id).file == 'b.jpeg'
        assert here.state() != state
        await here.close()
        await there.close()

    asyncio.run(run())


# SQLite's "DMS" byte of the -shm file: while any process holds a lock on it,
# the next process to open the database knows the WAL index is in use and
# leaves it be; with none held, it truncates the file to rebuild it.
DMS_BYTE = 128
_FLOCK = 'hhqqixxxx'  # struct flock on Linux: type, whence, start, len, pid

HELD_BY_ANOTHER = f"""
import fcntl, os, struct, sys
descriptor = os.open(sys.argv[1], os.O_RDWR)
asked = struct.pack({_FLOCK!r}, fcntl.F_WRLCK, os.SEEK_SET, {DMS_BYTE}, 1, 0)
told = struct.unpack({_FLOCK!r}, fcntl.fcntl(descriptor, fcntl.F_GETLK, asked))
print('held' if told[0] != fcntl.F_UNLCK else 'free')
"""


def dms_lock(shm):
    """Whether some process holds the DMS lock, as another process sees it."""
    done = subprocess.run(
        [sys.executable, '-c', HELD_BY_ANOTHER, str(shm)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_reading_the_header_keeps_the_lock_that_says_the_index_is_in_use(tmp_path):
    """The fast path must not drop SQLite's locks: a process that opened the
    database next would truncate the -shm under the server's mapping, and
    the server would die of SIGBUS."""

    async def run():
        index = SQLiteIndex(tmp_path)
        await index.count()
        shm = tmp_path / 'index.sqlite3-shm'
        assert dms_lock(shm) == 'held'
        for _ in range(3):
            assert index.peek('36562622-48e5-4a61-be67-e426b11821ed') is None
        assert dms_lock(shm) == 'held'  # Read from memory, still held.
        await index.close()
        assert not shm.exists()  # The last connection closed: all let go.

    asyncio.run(run())


def test_a_header_shorter_than_two_copies_keeps_its_file_open(tmp_path):
    path = str(tmp_path / 'db.sqlite3')
    reader = wal_database(path)
    reader.execute('SELECT * FROM t').fetchall()
    shm = tmp_path / 'db.sqlite3-shm'
    header = WalHeader(path)
    assert header.read() is not None
    assert dms_lock(shm) == 'held'
    short = WalHeader(str(tmp_path / 'other.sqlite3'))
    (tmp_path / 'other.sqlite3-shm').write_bytes(bytes(HEADER_SIZE))
    assert short.read() is None
    assert short.read() is None  # Tried again, on the same descriptor.
    short.close()
    header.close()
    reader.close()

"""Whether a SQLite database in WAL mode changed, told without a system call.

The fast path of :class:`~asgilook.storage.index.sqlite.SQLiteIndex` answers
from what it read before, for as long as no connection has committed since.
``PRAGMA data_version`` tells that, but each ask is a read transaction: locks
taken and released on the ``-shm`` file, two system calls, and it was most of
what a replay from memory cost once every request came in a loop turn of its
own.

The ``-shm`` file is the WAL index that every connection to the database
maps into memory, and its header (https://sqlite.org/walformat.html) changes
with every transaction committed: ``iChange`` is counted up, ``mxFrame``
moves, and a new WAL file gets new salts. :class:`WalHeader` maps that file
too and reads the header's two copies from memory; while they are what they
were, nothing was committed, and what was read then is still true.

NOTE: Only ever a shortcut to "nothing changed". A writer updates the second
copy, then the first: copies that differ (a commit being published) or a
header that is not initialised are no answer, and so is a database that is
not in WAL mode (it has no ``-shm``): the caller asks the database. SQLite
removes the ``-shm`` only when the last connection to the database closes;
the caller keeps its own connection open for as long as it uses this one.
"""

from __future__ import annotations

import mmap
import os

#: The bytes of one copy of the header; two copies start the file.
HEADER_SIZE = 48
# The header's isInit byte: 1 once a connection has built the index.
_IS_INIT = 12


class WalHeader:
    """The WAL-index header of one database, read from shared memory."""

    def __init__(self, database: str) -> None:
        self._path = f'{database}-shm'
        self._map: mmap.mmap | None = None

    def read(self) -> bytes | None:
        """The header as of now, or None if it cannot tell (ask the database).

        Call it only while a connection of this process to the database is
        open and has read it (so that the ``-shm`` file is the one in use).
        """
        if self._map is None:
            try:
                descriptor = os.open(self._path, os.O_RDONLY)
            except OSError:
                return None
            try:
                self._map = mmap.mmap(
                    descriptor, 2 * HEADER_SIZE, mmap.MAP_SHARED, mmap.PROT_READ
                )
            except (OSError, ValueError):
                # NOTE: Shorter than two headers: not an index in use.
                return None
            finally:
                os.close(descriptor)
        header = self._map[: 2 * HEADER_SIZE]
        if header[:HEADER_SIZE] != header[HEADER_SIZE:] or not header[_IS_INIT]:
            return None
        return header

    def close(self) -> None:
        """Let go of the mapping (with the connection it relied on)."""
        mapped, self._map = self._map, None
        if mapped is not None:
            mapped.close()

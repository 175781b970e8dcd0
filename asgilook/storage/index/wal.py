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

NOTE: The file stays open from the first read until :meth:`close`, which the
caller calls only once its connections are closed. SQLite's locks on the
``-shm`` are POSIX record locks, which a process loses on closing *any*
descriptor of the file, even one SQLite never knew of. Closing it after
mapping it once dropped the lock that tells other processes that this one
has the index in use: the next process to open the database then thought
itself the first, cut the ``-shm`` down to rebuild it, and this process,
reading its mapping meanwhile, died of SIGBUS (a backup taken under load
killed the server that way).
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
        self._descriptor: int | None = None
        self._map: mmap.mmap | None = None

    def read(self) -> bytes | None:
        """The header as of now, or None if it cannot tell (ask the database).

        Call it only while a connection of this process to the database is
        open and has read it (so that the ``-shm`` file is the one in use).
        """
        if self._map is None:
            if self._descriptor is None:
                try:
                    self._descriptor = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
            try:
                self._map = mmap.mmap(
                    self._descriptor, 2 * HEADER_SIZE, mmap.MAP_SHARED, mmap.PROT_READ
                )
            except (OSError, ValueError):
                # NOTE: Shorter than two headers: not an index in use. The
                #   descriptor stays open all the same (see the module's note).
                return None
        header = self._map[: 2 * HEADER_SIZE]
        if header[:HEADER_SIZE] != header[HEADER_SIZE:] or not header[_IS_INIT]:
            return None
        return header

    def close(self) -> None:
        """Let go of the mapping and the file, after the connections closed."""
        mapped, self._map = self._map, None
        if mapped is not None:
            mapped.close()
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            os.close(descriptor)

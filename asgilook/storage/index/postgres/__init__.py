"""The index in PostgreSQL: one database for the workers of several machines.

Set ``ASGI_LOOK_DATABASE_URL=postgresql://user@host/database``; the tables
are created in that database on first use. Every change is one transaction
that first moves on the ``counters`` row: its row lock makes writers take
turns, so the upload order (``seq``), the commit order and the times of the
changes (``modified``) all agree. Lookups and pages are queries on indexes
(the image id, ``seq`` as the primary key, and ``seq`` of the public
pictures and of each owner's), so the millionth page costs what the first
one does, and the number of images is kept in ``counters`` rather than
counted; so are the bytes of each upload key's pictures, in its row, which
a put over its key's quota finds locked (see ``_QUOTAS`` in :mod:`.queries`).

The fast path (:meth:`PostgresIndex.peek` and :meth:`PostgresIndex.state`)
answers in the event loop without a query. Every change notifies the
``asgilook_index`` channel, in its own transaction (so only once it has
committed), with the image's id. Each index keeps one connection that
LISTENs on it, and remembers what :meth:`PostgresIndex.get` found for the
images asked about most recently, until a notification says they changed.
While that connection is down (and until it is back, reconnecting by itself),
the fast path says :class:`~asgilook.storage.index.Behind` and the store asks the
database.

Each event loop gets a pool of a few connections of its own, opened when
first needed: falcon's test client and ``asyncio.run`` may use one index
from several loops in turn, and asyncpg's connections belong to one loop.

The modules, from the bottom up:

* :mod:`.schema`: the tables, their version, and creating or upgrading them.
* :mod:`.queries`: every other statement, and the session's put function.
* :mod:`.connections`: each loop's pool, and one use of a connection at a time.
* :mod:`.listener`: the LISTEN connection, and the fast path it keeps true.
* :mod:`.writer`: puts that come at once, written together in one transaction.
* :mod:`.index`: :class:`PostgresIndex`, reading and changing the index.
"""

from asgilook.storage.index.postgres.connections import UNREACHABLE
from asgilook.storage.index.postgres.index import PostgresIndex
from asgilook.storage.index.postgres.listener import LISTENER_NAME
from asgilook.storage.index.postgres.queries import CHANNEL
from asgilook.storage.index.postgres.queries import TOMBSTONE_MICROSECONDS
from asgilook.storage.index.postgres.schema import _SCHEMA
from asgilook.storage.index.postgres.schema import SCHEMA_LOCK
from asgilook.storage.index.postgres.schema import SCHEMA_VERSION
from asgilook.storage.index.postgres.schema import NewerSchema
from asgilook.storage.index.postgres.schema import create_schema

__all__ = [
    'CHANNEL',
    'LISTENER_NAME',
    'SCHEMA_LOCK',
    'SCHEMA_VERSION',
    'TOMBSTONE_MICROSECONDS',
    'UNREACHABLE',
    'NewerSchema',
    'PostgresIndex',
    '_SCHEMA',
    'create_schema',
]

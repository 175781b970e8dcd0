"""Reading a whole index, and sharing some of its pictures: for the tests of
the commands that copy indexes (test_migrate_index.py, test_backup.py)."""

import asyncio
import contextlib
import sqlite3
import uuid

from asgilook.storage.index import UploadKey
from asgilook.storage.index.sqlite import SQLiteIndex


def uid(name):
    """The image id of a picture of the tests, by name: a UUID, as routes take."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


async def every_entry(index):
    """Every entry of an index, whoever may see it, in upload order (a page of
    2 at a time)."""
    found = []
    while page := (
        await index.page(2, found[-1].image_id if found else None, everyone=True)
    )[0]:
        found += page
    return found


async def contents(index):
    """Every entry of an index, its upload keys and its secret of signed URLs."""
    try:
        return await every_entry(index), await index.keys(), await index.url_secret()
    finally:
        await index.close()


def share(storage):
    """Some pictures of ``storage`` made private or unlisted, and given names
    and owners, whose keys (one revoked) the index gets too. What it holds then.
    """

    async def keys():
        index = SQLiteIndex(storage)
        try:
            await index.add_key(UploadKey('alice', 'hash-alice', 10**9, 5))
            await index.add_key(UploadKey('bob', 'hash-bob', admin=True))
            await index.revoke_key('bob')
        finally:
            await index.close()

    asyncio.run(keys())
    with contextlib.closing(sqlite3.connect(storage / SQLiteIndex.FILE)) as db, db:
        for name, visibility, owner, size in (
            ('first', 'private', 'alice', 1000),
            ('last', 'unlisted', 'bob', 2000),
            ('second', 'public', 'alice', 3000),
        ):
            db.execute(
                'UPDATE images SET visibility = ?, owner = ?, name = ?, bytes = ? '
                'WHERE id = ?',
                (visibility, owner, f'{name}.png', size, uid(name)),
            )
    found = asyncio.run(contents(SQLiteIndex(storage)))
    assert [key.used for key in found[1]] == [4000, 2000]
    return found

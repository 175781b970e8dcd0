"""Who sees a picture, whose it is, and the upload keys: schema version 4.

Every backend passes this same suite (the ``backend`` fixture of
test_index.py): visibility and owners in the listings, quotas kept exact
under puts at once, the keys themselves, and the secret of signed URLs.
"""

import asyncio
import contextlib
import sqlite3

import pytest

from asgilook.errors import UnknownCursor
from asgilook.storage.index import PRIVATE
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import UNLISTED
from asgilook.storage.index import VISIBILITIES
from asgilook.storage.index import Entry
from asgilook.storage.index import KeyExists
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.index import UploadKey
from asgilook.storage.index import sqlite_schema
from asgilook.storage.index.sqlite import _MIGRATIONS
from asgilook.storage.index.sqlite import SQLiteIndex
from tests.test_index import anyone
from tests.test_index import run


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    """Makes index objects on one fresh database of the backend under test."""
    if request.param == 'sqlite':
        return lambda: SQLiteIndex(tmp_path)
    from asgilook.storage.index.postgres import PostgresIndex

    url = request.getfixturevalue('postgres_server').database()
    return lambda: PostgresIndex(url)


async def put(index, image_id, visibility=PUBLIC, owner='', size=0):
    entry, _ = await index.put(
        image_id,
        f'{image_id}.jpeg',
        (100, 50),
        't',
        name=f'{image_id}.png',
        visibility=visibility,
        owner=owner,
        bytes=size,
    )
    return entry


async def ids(index, **kwargs):
    entries, _ = await index.page(**kwargs)
    return [entry.image_id for entry in entries]


async def used(index, name):
    (key,) = [key for key in await index.keys() if key.name == name]
    return key.used


def test_visibilities_are_three():
    assert VISIBILITIES == ('public', 'unlisted', 'private')
    assert (PUBLIC, UNLISTED, PRIVATE) == VISIBILITIES


# The listings


def test_the_listing_shows_public_pictures_an_owner_all_theirs_admins_all(backend):
    async def scenario(one, two):
        await put(one, 'p1', owner='alice')
        await put(two, 'x1', PRIVATE, 'alice')
        await put(one, 'u1', UNLISTED, 'bob')
        await put(two, 'p2')
        await put(one, 'x2', PRIVATE, 'bob')

        assert await ids(two) == ['p1', 'p2']
        assert await ids(two, newest_first=True) == ['p2', 'p1']
        assert await ids(one, owner='alice') == ['p1', 'x1']
        assert await ids(one, owner='bob', newest_first=True) == ['x2', 'u1']
        assert await ids(one, owner='carol') == []
        everyone = ['p1', 'x1', 'u1', 'p2', 'x2']
        assert await ids(two, everyone=True) == everyone
        assert await ids(two, everyone=True, newest_first=True) == everyone[::-1]
        # An owner's listing is theirs, even for an admin's page.
        assert await ids(two, owner='alice', everyone=True) == ['p1', 'x1']
        # Every picture counts, and every file is one of the index's.
        assert await one.count() == 5
        assert await one.files() == {f'{image_id}.jpeg' for image_id in everyone}

    run(backend, scenario)


def test_a_public_page_fills_its_limit_across_hidden_pictures(backend):
    async def scenario(index):
        await put(index, 'p1')
        for number in range(6):
            await put(index, f'x{number}', PRIVATE, 'alice')
        await put(index, 'p2')
        await put(index, 'u1', UNLISTED, 'alice')
        await put(index, 'p3')
        await put(index, 'p4')

        assert await ids(index, limit=2) == ['p1', 'p2']
        assert await ids(index, limit=2, after='p2') == ['p3', 'p4']
        assert await ids(index, limit=2, newest_first=True) == ['p4', 'p3']
        assert await ids(index, limit=2, after='p3', newest_first=True) == [
            'p2',
            'p1',
        ]
        # A cursor that the page would not show is a place all the same.
        assert await ids(index, limit=2, after='x3') == ['p2', 'p3']
        assert await ids(index, limit=3, after='u1', newest_first=True) == [
            'p2',
            'p1',
        ]
        await index.delete('x4', anyone)
        assert await ids(index, limit=1, after='x4') == ['p2']
        assert await ids(index, owner='alice', limit=2, after='x4') == ['x5', 'u1']
        with pytest.raises(UnknownCursor):
            await index.page(after='never', owner='alice')

    run(backend, scenario, processes=1)


def test_entries_carry_their_name_visibility_owner_and_bytes(backend):
    async def scenario(one, two):
        first = await put(one, 'a', UNLISTED, 'alice', 1234)
        assert first == Entry(
            'a', 'a.jpeg', (100, 50), first.modified, 't', '', False,
            'a.png', UNLISTED, 'alice', 1234,
        )  # fmt: skip
        assert await two.get('a') == first
        second, replaced = await two.put('a', 'a.2.jpeg', (1, 1), 'u')
        assert replaced == first
        # What a put does not say is the default: no name, public, no owner.
        assert second == Entry('a', 'a.2.jpeg', (1, 1), second.modified, 'u')
        assert await one.get('a') == second
        return second

    second = run(backend, scenario)
    assert (second.name, second.visibility, second.owner, second.bytes) == (
        '',
        PUBLIC,
        '',
        0,
    )


def test_adopted_entries_keep_every_field(backend):
    old = [
        Entry('a', 'a.jpeg', (1, 1), 5, 'h', 'data:x', True, 'a.gif', PRIVATE, 'al', 9),
        Entry('b', 'b.jpeg', (2, 2), 6, 'h', '', False, 'b.png', UNLISTED, 'al', 4),
    ]

    async def scenario(index):
        await index.add_key(UploadKey('al', 'hash-al', quota=100))
        assert await index.adopt('old', old)
        assert (await index.page(everyone=True))[0] == old
        assert await used(index, 'al') == 13

    run(backend, scenario, processes=1)


# Quotas


def test_quotas_are_exact_under_twenty_puts_at_once(backend):
    async def scenario(one, two):
        await one.add_key(UploadKey('alice', 'hash-alice', quota=1000))
        await one.add_key(UploadKey('bob', 'hash-bob'))
        puts = [
            (one if number % 2 else two).put(
                f'i{number}', f'i{number}.jpeg', (1, 1), 't', owner='alice', bytes=100
            )
            for number in range(20)
        ]
        # Open uploads and a key without a quota go on among them.
        others = [put(one, f'open{number}') for number in range(3)]
        others += [
            put(two, f'bob{number}', owner='bob', size=10**9) for number in range(3)
        ]
        results = await asyncio.gather(*puts, *others, return_exceptions=True)
        refused = [result for result in results if isinstance(result, Exception)]
        assert len(refused) == 10
        for ex in refused:
            assert isinstance(ex, QuotaExceeded)
            assert (ex.key.name, ex.key.quota, ex.used, ex.size) == (
                'alice',
                1000,
                1000,
                100,
            )
            assert 'over its quota of 1000' in str(ex)
        assert await used(two, 'alice') == 1000
        assert len(await ids(one, owner='alice')) == 10
        assert await used(one, 'bob') == 3 * 10**9
        assert await one.count() == 16
        # Nothing of a refused put was written.
        stored = set(await ids(one, everyone=True))
        for number, result in enumerate(results[:20]):
            assert (f'i{number}' in stored) == (not isinstance(result, Exception))

    run(backend, scenario)


def test_a_replaced_version_gives_its_bytes_back(backend):
    async def scenario(index):
        await index.add_key(UploadKey('alice', 'hash-alice', quota=100))
        await index.add_key(UploadKey('bob', 'hash-bob', quota=100))
        await put(index, 'a', owner='alice', size=60)
        await put(index, 'b', owner='alice', size=30)
        # 90 - 60 + 70 = 100: just fits.
        await put(index, 'a', owner='alice', size=70)
        assert await used(index, 'alice') == 100
        with pytest.raises(QuotaExceeded) as raised:
            await put(index, 'a', owner='alice', size=71)
        # What the key's other pictures hold, and what would not fit.
        assert (raised.value.used, raised.value.size) == (30, 71)
        assert (await index.get('a')).bytes == 70
        assert await used(index, 'alice') == 100

        # Bob's picture, put anew by alice: it counts as hers, not his.
        await put(index, 'c', owner='bob', size=50)
        with pytest.raises(QuotaExceeded):
            await put(index, 'c', owner='alice', size=1)
        await put(index, 'b', PRIVATE, 'bob', 40)
        assert (await used(index, 'alice'), await used(index, 'bob')) == (70, 90)

        await index.delete('a', anyone)
        assert await used(index, 'alice') == 0
        await put(index, 'd', owner='alice', size=100)

    run(backend, scenario, processes=1)


def test_a_refused_put_leaves_the_others_of_its_batch_alone(backend):
    async def scenario(index):
        await index.add_key(UploadKey('alice', 'hash-alice', quota=10))
        await put(index, 'full', owner='alice', size=10)
        # Queued at once: written together, in as few batches as may be.
        results = await asyncio.gather(
            put(index, 'a'),
            put(index, 'over', owner='alice', size=1),
            put(index, 'b', PRIVATE, 'bob', 5),
            put(index, 'full', owner='alice', size=3),
            return_exceptions=True,
        )
        assert [type(result).__name__ for result in results] == [
            'Entry',
            'QuotaExceeded',
            'Entry',
            'Entry',
        ]
        assert await ids(index, everyone=True) == ['a', 'b', 'full']
        times = [entry.modified for entry in (await index.page(everyone=True))[0]]
        assert times == sorted(set(times))
        assert [result.modified for result in results if isinstance(result, Entry)] == (
            times
        )
        assert await used(index, 'alice') == 3
        assert await index.count() == 3

    run(backend, scenario, processes=1)


def test_a_batch_of_refused_puts_only_changes_nothing(backend):
    async def scenario(index):
        await index.add_key(UploadKey('alice', 'hash-alice', quota=0))
        await put(index, 'a')
        before = await index.page(everyone=True)
        results = await asyncio.gather(
            put(index, 'a', owner='alice', size=1),
            put(index, 'b', owner='alice', size=1),
            return_exceptions=True,
        )
        assert all(isinstance(result, QuotaExceeded) for result in results)
        assert (await index.page(everyone=True))[0] == before[0]
        assert await index.count() == 1
        assert await used(index, 'alice') == 0

    run(backend, scenario, processes=1)


# The keys


def test_keys_are_added_listed_found_and_revoked(backend):
    async def scenario(one, two):
        # Pictures of a name before its key: they count once it is made.
        await put(one, 'early', owner='carol', size=7)
        alice = await one.add_key(
            UploadKey('alice', 'hash-alice', quota=10, rate=5, admin=True)
        )
        assert alice.created > 0
        assert alice == UploadKey(
            'alice', 'hash-alice', 10, 5, True, alice.created, None, 0
        )
        copied = UploadKey('bob', 'hash-bob', None, None, False, 17, 23)
        assert await two.add_key(copied) == copied
        carol = await two.add_key(UploadKey('carol', 'hash-carol'))
        assert carol.used == 7

        assert await one.keys() == [alice, copied, carol]
        assert await two.key_by_hash('hash-alice') == alice
        assert await two.key_by_hash('hash-bob') == copied
        assert await two.key_by_hash('nobody') is None

        revoked = await one.revoke_key('alice')
        assert revoked.revoked >= alice.created
        assert revoked == UploadKey(
            'alice', 'hash-alice', 10, 5, True, alice.created, revoked.revoked
        )
        # Again: the first time stays.
        assert await two.revoke_key('alice') == revoked
        assert await two.key_by_hash('hash-alice') == revoked
        assert await one.revoke_key('dave') is None

        # A name is never used twice, revoked or not; nor a secret.
        for taken in (
            UploadKey('alice', 'another-hash'),
            UploadKey('bob', 'another-hash'),
            UploadKey('erin', 'hash-carol'),
        ):
            with pytest.raises(KeyExists, match='never used twice'):
                await two.add_key(taken)
        assert [key.name for key in await one.keys()] == ['alice', 'bob', 'carol']

    run(backend, scenario)


def test_a_key_s_used_bytes_follow_its_pictures(backend):
    async def scenario(one, two):
        await one.add_key(UploadKey('alice', 'hash-alice'))
        await put(one, 'a', owner='alice', size=5)
        await put(two, 'b', PRIVATE, 'alice', 6)
        await put(two, 'c', owner='bob', size=100)
        assert (await two.key_by_hash('hash-alice')).used == 11
        await two.delete('a', anyone)
        assert (await one.key_by_hash('hash-alice')).used == 6

    run(backend, scenario)


# The secret of signed URLs


def test_the_url_secret_is_one_per_index(backend, tmp_path):
    async def scenario(one, two):
        secret = await one.url_secret()
        assert len(secret) == 32
        assert await two.url_secret() == secret
        assert await one.url_secret() == secret  # as remembered
        return secret

    first = run(backend, scenario)
    assert run(backend, scenario) == first

    async def of_another(index):
        return await index.url_secret()

    other = tmp_path / 'another'
    other.mkdir()
    assert run(lambda: SQLiteIndex(other), of_another, processes=1) != first


def test_a_copy_takes_the_secret_it_is_given(backend):
    async def scenario(one, two):
        await two.url_secret()
        await one.set_url_secret(b's' * 32)
        assert await one.url_secret() == b's' * 32
        return backend()

    fresh = run(backend, scenario)

    async def read(index):
        return await index.url_secret()

    assert run(lambda: fresh, read, processes=1) == b's' * 32


@pytest.mark.postgres
def test_postgres_databases_have_secrets_of_their_own(postgres_server):
    from asgilook.storage.index.postgres import PostgresIndex

    async def secret(url):
        index = PostgresIndex(url)
        try:
            return await index.url_secret()
        finally:
            await index.close()

    one, two = postgres_server.database(), postgres_server.database()
    assert asyncio.run(secret(one)) != asyncio.run(secret(two))


# Older indexes


def test_a_sqlite_index_of_version_3_gets_the_defaults(tmp_path):
    # What the release before keys made.
    with contextlib.closing(sqlite3.connect(tmp_path / SQLiteIndex.FILE)) as db:
        db.executescript(
            _MIGRATIONS[1]
            + _MIGRATIONS[2]
            + _MIGRATIONS[3].replace('{deployment}', 'd' * 32)
            + 'INSERT INTO images (id, file, width, height, modified, token_hash, '
            + "placeholder, animated) VALUES ('a', 'a.1.jpeg', 640, 480, 7, 'h', "
            + "'data:x', 1);"
            + 'UPDATE counters SET clock = 7, images = 1; PRAGMA user_version = 3;'
        )

    async def scenario(index):
        (before,), _ = await index.page()
        await index.add_key(UploadKey('alice', 'hash-alice', quota=5))
        await put(index, 'b', PRIVATE, 'alice', 5)
        return (
            before,
            await index.deployment(),
            await index.url_secret(),
            await ids(index, owner='alice'),
        )

    before, deployment, secret, owned = run(
        lambda: SQLiteIndex(tmp_path), scenario, processes=1
    )
    assert before == Entry('a', 'a.1.jpeg', (640, 480), 7, 'h', 'data:x', True)
    assert (before.name, before.visibility, before.owner, before.bytes) == (
        '',
        PUBLIC,
        '',
        0,
    )
    assert deployment == 'd' * 32
    assert len(secret) == 32
    assert owned == ['b']
    with contextlib.closing(sqlite3.connect(tmp_path / SQLiteIndex.FILE)) as db:
        assert db.execute('PRAGMA user_version').fetchone() == (4,)


@pytest.mark.postgres
def test_a_postgres_index_of_version_3_gets_the_defaults(postgres_server):
    from asgilook.storage.index.postgres import PostgresIndex
    from asgilook.storage.index.postgres import schema

    url = postgres_server.database()
    name = url.rsplit('/', 1)[1]
    postgres_server.psql(
        schema._SCHEMA
        + schema._SCHEMA_2
        + schema._SCHEMA_3
        + "INSERT INTO deployment VALUES (true, 'old');"
        + 'INSERT INTO asgilook_schema VALUES (true, 3);'
        + 'INSERT INTO images (id, file, width, height, modified, token_hash) '
        + "VALUES ('a', 'a.1.jpeg', 640, 480, 7, 'h');"
        + 'UPDATE counters SET clock = 7, images = 1;',
        name,
    )

    async def scenario():
        index = PostgresIndex(url)
        try:
            (before,), _ = await index.page()
            await index.add_key(UploadKey('alice', 'hash-alice', quota=5))
            await put(index, 'b', PRIVATE, 'alice', 5)
            return (
                before,
                await index.deployment(),
                len(await index.url_secret()),
                await ids(index, owner='alice'),
            )
        finally:
            await index.close()

    before, deployment, secret, owned = asyncio.run(scenario())
    assert before == Entry('a', 'a.1.jpeg', (640, 480), 7, 'h')
    assert (deployment, secret, owned) == ('old', 32, ['b'])
    assert postgres_server.psql('SELECT version FROM asgilook_schema', name) == '4'


def test_a_schema_s_statements_are_split_whole():
    script = 'CREATE TABLE t (a);\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n'
    script += '    SELECT 1; SELECT 2;\nEND;\n;\n'
    assert list(sqlite_schema.statements(script)) == [
        'CREATE TABLE t (a);',
        '\nCREATE TRIGGER x AFTER INSERT ON t BEGIN\n    SELECT 1; SELECT 2;\nEND;',
    ]


@pytest.mark.parametrize(
    'owner, everyone, newest_first, plan',
    [
        (None, False, False, 'SEARCH images USING INDEX images_public (seq>?)'),
        (None, False, True, 'SEARCH images USING INDEX images_public (seq<?)'),
        (
            'a',
            False,
            False,
            'SEARCH images USING INDEX images_by_owner (owner=? AND seq>?)',
        ),
        (
            'a',
            True,
            True,
            'SEARCH images USING INDEX images_by_owner (owner=? AND seq<?)',
        ),
        (None, True, False, 'SEARCH images USING INTEGER PRIMARY KEY (rowid>?)'),
    ],
)
def test_sqlite_pages_are_ranges_of_an_index(
    tmp_path, owner, everyone, newest_first, plan
):
    # A public page reads public rows only, an owner's page that owner's:
    # never a scan that steps over the others one by one.
    async def made(index):
        return await index.count()

    run(lambda: SQLiteIndex(tmp_path), made, processes=1)
    query = sqlite_schema.page_query(owner, everyone, newest_first)
    arguments = ([] if owner is None else [owner]) + [1, 10]
    with contextlib.closing(sqlite3.connect(tmp_path / SQLiteIndex.FILE)) as db:
        steps = db.execute(f'EXPLAIN QUERY PLAN {query}', arguments).fetchall()
    assert [step[3] for step in steps] == [plan]

"""``asgilook migrate --to-database``: the index moved between SQLite and PostgreSQL.

Pictures are stored with a :class:`~asgilook.storage.store.Store` (one
replaced, one deleted, one animated), the command runs in this process with
``cli.main``, and the index it made is read back through the
:class:`~asgilook.storage.index.Index` interface: every entry equal, in order.
With a real PostgreSQL (tests/postgres.py), a real uvicorn serves the moved
index, and a delete token handed out before the move still deletes.
"""

import asyncio
import json
import pathlib
import sqlite3

import httpx
import pytest

from asgilook.commands import cli
from asgilook.commands import index_move
from asgilook.config import Config
from asgilook.errors import StorageUnavailable
from asgilook.storage.index import UploadKey
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.index_contents import contents
from tests.index_contents import every_entry
from tests.index_contents import share
from tests.index_contents import uid
from tests.servers import Uvicorn
from tests.test_placeholders import gif

IDS = ('first', 'second', 'replaced', 'deleted', 'animated', 'last')


def run(capsys, environ, *args):
    """``asgilook ARGS`` in this process: its status, stdout and stderr."""
    status = cli.main([str(arg) for arg in args], environ)
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, environ, *args):
    status, out, _ = run(capsys, environ, *args, '--json')
    document = json.loads(out)
    assert document['status'] == status
    return document


async def fill(environ, ids=IDS):
    """Store pictures; replace one, delete one. Their delete tokens, by id."""
    store = Store(Config.from_environ(environ))
    tokens = {}
    try:
        for image_id in ids:
            data = draw_image((160, 120))
            if image_id == 'animated':
                data = gif(['red', 'lime', 'blue'], size=(128, 64))
            _, tokens[image_id] = await store.save(uid(image_id), data)
        if 'replaced' in ids:
            _, tokens['replaced'] = await store.save(uid('replaced'), draw_image())
        if 'deleted' in ids:
            await store.delete(uid('deleted'), tokens.pop('deleted'))
    finally:
        await store.process_shutdown(None, None)
    return tokens


async def entries(index):
    """Every entry of an index, then let go of it."""
    try:
        return await every_entry(index)
    finally:
        await index.close()


def sqlite_entries(root):
    return asyncio.run(entries(SQLiteIndex(root)))


def postgres_entries(url):
    from asgilook.storage.index.postgres import PostgresIndex

    return asyncio.run(entries(PostgresIndex(url)))


@pytest.fixture
def storage(tmp_path):
    return tmp_path / 'storage'


@pytest.fixture
def environ(storage):
    return {'ASGI_LOOK_STORAGE_PATH': str(storage)}


@pytest.fixture
def tokens(environ):
    return asyncio.run(fill(environ))


@pytest.fixture
def before(storage, tokens):
    """The entries of the SQLite index, before any move."""
    found = sqlite_entries(storage)
    assert [entry.image_id for entry in found] == [
        uid(name) for name in ('first', 'second', 'animated', 'last', 'replaced')
    ]
    assert any(entry.animated for entry in found)
    assert all(entry.placeholder for entry in found)
    return found


@pytest.fixture
def shared(storage, before):
    """What the SQLite index holds once some of its pictures are shared."""
    return share(storage)


# SQLite to SQLite: every path of the command, without a server


def test_sqlite_to_another_directory_keeps_every_entry(
    capsys, tmp_path, environ, storage, before
):
    status, out, err = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert (status, err) == (0, '')
    assert sqlite_entries(tmp_path / 'other') == before
    assert '5 entries copied, 0 there from an earlier run' in out
    assert 'verified: 5 entries, equal on both sides, in upload order' in out
    assert 'renamed to index.sqlite3.migrated' in out
    assert f'--storage {tmp_path / "other"}' in out
    assert not (storage / 'index.sqlite3').exists()
    assert not (storage / 'index.sqlite3-wal').exists()
    # The renamed file is a whole SQLite database, without its WAL.
    assert sqlite_entries_of_file(storage / 'index.sqlite3.migrated') == before


def test_keys_names_visibility_and_the_url_secret_move_too(
    capsys, tmp_path, environ, shared
):
    other = tmp_path / 'other'
    status, out, _ = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{other}'
    )
    assert status == 0
    assert '2 upload keys copied, and the secret of signed URLs' in out
    moved = asyncio.run(contents(SQLiteIndex(other)))
    assert moved == shared
    assert [entry.visibility for entry in moved[0]].count('private') == 1


def test_a_key_the_destination_has_is_left_alone(tmp_path):
    async def scenario():
        source, target = SQLiteIndex(tmp_path / 'a'), SQLiteIndex(tmp_path / 'b')
        try:
            await source.add_key(UploadKey('alice', 'hash-1'))
            await source.add_key(UploadKey('bob', 'hash-2'))
            await source.add_key(UploadKey('carol', 'hash-3'))
            await target.add_key(UploadKey('alice', 'another'))
            await target.add_key(UploadKey('dave', 'hash-3'))
            added = await index_move.copy_keys(source, target)
            return added, [(key.name, key.key_hash) for key in await target.keys()]
        finally:
            await source.close()
            await target.close()

    for where in 'ab':
        (tmp_path / where).mkdir()
    added, keys = asyncio.run(scenario())
    assert added == 1
    assert keys == [('alice', 'another'), ('dave', 'hash-3'), ('bob', 'hash-2')]


def sqlite_entries_of_file(path):
    """The entries of a SQLite index file named otherwise, read from a copy."""
    copy = path.parent / 'copy'
    copy.mkdir()
    (copy / 'index.sqlite3').write_bytes(path.read_bytes())
    return sqlite_entries(copy)


def test_the_move_goes_on_after_an_interruption(
    capsys, monkeypatch, tmp_path, environ, storage, before
):
    adopt = SQLiteIndex.adopt
    calls = []

    async def failing(self, source, batch):
        calls.append(source)
        if len(calls) == 3:
            raise StorageUnavailable('The image index cannot be used right now.')
        return await adopt(self, source, batch)

    monkeypatch.setattr(SQLiteIndex, 'adopt', failing)
    target = f'sqlite://{tmp_path}/other/index.sqlite3'
    status, out, _ = run(
        capsys, environ, 'migrate', '--to-database', target, '--batch', '1'
    )
    assert status == 1
    assert '2 entries copied' in out
    assert 'Failed: The image index cannot be used right now. Run it again' in out
    assert (storage / 'index.sqlite3').is_file()
    assert sqlite_entries(tmp_path / 'other') == before[:2]

    monkeypatch.setattr(SQLiteIndex, 'adopt', adopt)
    document = run_json(
        capsys, environ, 'migrate', '--to-database', target, '--batch', '2'
    )
    assert document['already_there'] == 2
    assert document['copied'] == 3
    assert document['verified'] is True
    assert document['renamed_to'] == str(storage / 'index.sqlite3.migrated')
    assert sqlite_entries(tmp_path / 'other') == before
    # Each batch had a name of its own: none was taken for one adopted before.
    assert len(set(calls)) == len(calls)


def test_a_destination_holding_other_pictures_is_refused(
    capsys, tmp_path, environ, storage, before
):
    asyncio.run(
        fill({'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'other')}, ['someone else'])
    )
    status, out, err = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert (status, out) == (2, '')
    assert (
        'is not empty, and not an earlier run of this move (entry 1 differs: '
        f'{uid("someone else")} is there where the source has {uid("first")}): '
        'give an empty database' in err
    )
    assert sqlite_entries(storage) == before


def test_a_destination_holding_more_is_refused(
    capsys, tmp_path, environ, storage, before
):
    other = tmp_path / 'other'
    assert run(capsys, environ, 'migrate', '--to-database', f'sqlite://{other}')[0] == 0
    asyncio.run(fill({'ASGI_LOOK_STORAGE_PATH': str(other)}, ['newer']))
    (storage / 'index.sqlite3.migrated').rename(storage / 'index.sqlite3')
    status, _, err = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{other}'
    )
    assert status == 2
    assert (
        'not an earlier run of this move (it holds more entries than the source, 6)'
        in err
    )


def test_a_copy_that_lacks_entries_fails(
    capsys, monkeypatch, tmp_path, environ, storage
):
    asyncio.run(fill(environ))
    adopt = SQLiteIndex.adopt

    async def dropping(self, source, batch):
        return await adopt(self, source, batch[:-1])

    monkeypatch.setattr(SQLiteIndex, 'adopt', dropping)
    status, out, _ = run(
        capsys,
        environ,
        'migrate',
        '--to-database',
        f'sqlite://{tmp_path}/other',
        '--batch',
        '2',
    )
    assert status == 1
    assert (
        f'Failed: entry 2 differs: {uid("animated")} is there where the source '
        f'has {uid("second")}' in out
    )
    assert (storage / 'index.sqlite3').is_file()


def test_a_copy_with_a_missing_last_entry_fails(
    capsys, monkeypatch, tmp_path, environ, storage
):
    asyncio.run(fill(environ, ['a', 'b', 'c']))
    adopt = SQLiteIndex.adopt

    async def dropping(self, source, batch):
        return await adopt(self, source, [e for e in batch if e.image_id != uid('c')])

    monkeypatch.setattr(SQLiteIndex, 'adopt', dropping)
    status, out, _ = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert status == 1
    assert 'Failed: it holds 2 entries only, fewer than the source' in out


def test_a_count_that_differs_fails(capsys, monkeypatch, tmp_path, environ):
    asyncio.run(fill(environ, ['a', 'b']))
    count = SQLiteIndex.count
    other = tmp_path / 'other'

    async def wrong(self):
        return await count(self) + (self.path.parent == other)

    monkeypatch.setattr(SQLiteIndex, 'count', wrong)
    status, out, _ = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{other}'
    )
    assert status == 1
    assert f'Failed: {other}/index.sqlite3 counts another number of images' in out


def test_a_source_that_changes_during_the_move_fails(
    capsys, monkeypatch, tmp_path, environ, storage
):
    asyncio.run(fill(environ, ['a', 'b', 'c']))
    adopt = SQLiteIndex.adopt

    async def meanwhile(self, source, batch):
        done = await adopt(self, source, batch)
        await fill(environ, ['uploaded meanwhile'])
        return done

    monkeypatch.setattr(SQLiteIndex, 'adopt', meanwhile)
    status, out, _ = run(
        capsys,
        environ,
        'migrate',
        '--to-database',
        f'sqlite://{tmp_path}/other',
        '--batch',
        '10',
    )
    assert status == 1
    assert (
        f'Failed: {storage}/index.sqlite3 changed during the move: stop the '
        'service (no uploads, no deletions) and run it again' in out
    )
    assert (storage / 'index.sqlite3').is_file()


def test_a_source_changing_without_a_difference_yet_fails_too(
    capsys, monkeypatch, tmp_path, environ, storage
):
    asyncio.run(fill(environ, ['a', 'b']))
    fingerprint = index_move.fingerprint
    calls = []

    async def changed(index):
        calls.append(index)
        found = await fingerprint(index)
        return found if len(calls) == 1 else (found[0] + 1, found[1])

    monkeypatch.setattr(index_move, 'fingerprint', changed)
    status, out, _ = run(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert status == 1
    assert 'changed during the move' in out


def test_an_index_still_in_use_is_not_renamed(
    capsys, tmp_path, environ, storage, before
):
    holder = sqlite3.connect(storage / 'index.sqlite3')
    try:
        holder.execute('SELECT count(*) FROM images').fetchone()
        status, out, _ = run(
            capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
        )
    finally:
        holder.close()
    assert status == 1
    assert 'verified: 5 entries' in out
    assert (
        f'Failed: {storage}/index.sqlite3 is still in use (database is locked): '
        'stop the service that has it open' in out
    )
    assert (storage / 'index.sqlite3').is_file()
    # Run again: all of it is there, and the file is renamed now.
    document = run_json(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert (document['status'], document['copied'], document['already_there']) == (
        0,
        0,
        5,
    )


def test_an_earlier_migrated_file_is_kept(capsys, tmp_path, environ, storage, before):
    (storage / 'index.sqlite3.migrated').write_text('an earlier one')
    document = run_json(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert document['renamed_to'] == str(storage / 'index.sqlite3.migrated.2')
    assert (storage / 'index.sqlite3.migrated').read_text() == 'an earlier one'


def test_ctrl_c_interrupts_the_move(capsys, monkeypatch, tmp_path, environ, before):
    async def interrupted(self, source, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteIndex, 'adopt', interrupted)
    document = run_json(
        capsys, environ, 'migrate', '--to-database', f'sqlite://{tmp_path}/other'
    )
    assert document['status'] == 130
    assert document['problem'] == 'interrupted: run it again to go on'


@pytest.mark.parametrize(
    'url, message',
    [
        (
            'mysql://db/pictures',
            "'mysql://db/pictures' names no database: give "
            'postgresql://USER@HOST/DATABASE, sqlite',
        ),
        ('sqlite:relative', "'sqlite:relative' names no database"),
        ('sqlite', 'the index is in {storage}/index.sqlite3 already'),
        (
            'sqlite://{storage}/index.sqlite3',
            'the index is in {storage}/index.sqlite3 already',
        ),
    ],
)
def test_what_cannot_start_exits_2(capsys, environ, storage, before, url, message):
    status, out, err = run(
        capsys, environ, 'migrate', '--to-database', url.format(storage=storage)
    )
    assert (status, out) == (2, '')
    assert message.format(storage=storage) in err


def test_no_index_nothing_to_move(capsys, environ, storage):
    storage.mkdir()
    status, _, err = run(
        capsys, environ, 'migrate', '--to-database', 'sqlite:///elsewhere'
    )
    assert status == 2
    assert f'there is no index in {storage}: nothing to move' in err


def test_migrate_needs_a_destination(capsys, environ):
    with pytest.raises(SystemExit) as exit:
        cli.main(['migrate'], environ)
    assert exit.value.code == 2
    assert (
        'the following arguments are required: --to (or --to-database)'
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        cli.main(['migrate', '--to', 'x', '--to-database', 'sqlite'], environ)
    assert 'not allowed with argument' in capsys.readouterr().err


@pytest.mark.parametrize(
    'url, where',
    [
        ('sqlite', '/srv/a/index.sqlite3'),
        ('SQLite://', '/srv/a/index.sqlite3'),
        ('sqlite:///b', '/b/index.sqlite3'),
        ('sqlite:///b/index.sqlite3', '/b/index.sqlite3'),
        ('postgresql://me:secret@db/pictures', 'postgresql://me:***@db/pictures'),
        ('postgres://db/pictures', 'postgres://db/pictures'),
    ],
)
def test_database_spellings(url, where):
    assert index_move.database(url, pathlib.Path('/srv/a')).where == where


# SQLite to PostgreSQL and back, served by a real uvicorn


@pytest.mark.postgres
@pytest.mark.e2e
def test_to_postgres_and_the_tokens_still_delete(
    capsys, postgres_server, redis_server, environ, storage, tokens, before
):
    url = postgres_server.database()
    status, out, _ = run(capsys, environ, 'migrate', '--to-database', url)
    assert status == 0
    assert 'to PostgreSQL, postgresql://' in out
    assert f'Done: serve with ASGI_LOOK_DATABASE_URL={url}' in out
    assert postgres_entries(url) == before
    assert not (storage / 'index.sqlite3').exists()

    server = Uvicorn(storage, redis_server.url, env={'ASGI_LOOK_DATABASE_URL': url})
    try:
        with httpx.Client(base_url=server.url) as client:
            listed = client.get('/images').json()
            assert [image['id'] for image in listed] == [
                entry.image_id for entry in before
            ]
            got = client.get(f'/images/{uid("first")}.jpeg')
            assert got.status_code == 200, got.text
            assert got.content == (storage / 'images' / before[0].file).read_bytes()
            deleted = client.delete(
                f'/images/{uid("replaced")}.jpeg',
                headers={'Authorization': f'Bearer {tokens["replaced"]}'},
            )
            assert deleted.status_code in (200, 204)
            assert client.get(f'/images/{uid("replaced")}.jpeg').status_code == 404
            wrong = client.delete(
                f'/images/{uid("first")}.jpeg',
                headers={'Authorization': f'Bearer {tokens["last"]}'},
            )
            assert wrong.status_code == 403
            assert (
                client.post('/images', content=draw_image((100, 80))).status_code == 201
            )
    finally:
        server.stop()
    after = postgres_entries(url)
    assert after[:4] == before[:4]
    assert after[-1].modified > before[-1].modified


@pytest.mark.postgres
def test_postgres_back_to_sqlite(capsys, postgres_server, environ, storage, before):
    url = postgres_server.database()
    assert run(capsys, environ, 'migrate', '--to-database', url)[0] == 0
    on_postgres = {**environ, 'ASGI_LOOK_DATABASE_URL': url}
    status, out, _ = run(
        capsys, on_postgres, 'migrate', '--to-database', 'sqlite', '--batch', '2'
    )
    assert status == 0
    assert 'from PostgreSQL' in out
    assert (
        f'Done: serve without ASGI_LOOK_DATABASE_URL, with --storage {storage}' in out
    )
    assert sqlite_entries(storage) == before
    # The database is left as it was; the earlier SQLite file too.
    assert postgres_entries(url) == before
    assert (storage / 'index.sqlite3.migrated').is_file()
    # An upload after the move comes after every moved one.
    asyncio.run(fill(environ, ['after the move']))
    assert sqlite_entries(storage)[-1].modified > before[-1].modified


@pytest.mark.postgres
def test_an_interrupted_move_to_postgres_goes_on(
    capsys, monkeypatch, postgres_server, environ, storage, before
):
    from asgilook.storage.index.postgres import PostgresIndex

    url = postgres_server.database()
    adopt = PostgresIndex.adopt
    batches = []

    async def failing(self, source, batch):
        if len(batches) == 2:
            raise StorageUnavailable('The image index cannot be used right now.')
        batches.append(batch)
        return await adopt(self, source, batch)

    monkeypatch.setattr(PostgresIndex, 'adopt', failing)
    status, _, _ = run(capsys, environ, 'migrate', '--to-database', url, '--batch', '1')
    assert status == 1
    assert postgres_entries(url) == before[:2]
    monkeypatch.setattr(PostgresIndex, 'adopt', adopt)
    document = run_json(
        capsys, environ, 'migrate', '--to-database', url, '--batch', '1'
    )
    assert (document['status'], document['already_there'], document['copied']) == (
        0,
        2,
        3,
    )
    assert postgres_entries(url) == before


@pytest.mark.postgres
def test_keys_and_the_secret_go_to_postgres_and_back(
    capsys, postgres_server, environ, storage, shared
):
    from asgilook.storage.index.postgres import PostgresIndex

    url = postgres_server.database()
    document = run_json(capsys, environ, 'migrate', '--to-database', url)
    assert (document['status'], document['keys_copied']) == (0, 2)
    assert asyncio.run(contents(PostgresIndex(url))) == shared
    on_postgres = {**environ, 'ASGI_LOOK_DATABASE_URL': url}
    assert run(capsys, on_postgres, 'migrate', '--to-database', 'sqlite')[0] == 0
    assert asyncio.run(contents(SQLiteIndex(storage))) == shared

"""``asgilook keys add``, ``keys list`` and ``keys revoke``.

The commands run in this process (``cli.main``) on a SQLite index in a fresh
storage directory, which the tests then read with the index's own API; one
test runs them on a real PostgreSQL (tests/postgres.py).
"""

import asyncio
import datetime
import hashlib
import json
import pathlib
import re
import shlex
import sqlite3

import pytest

from asgilook.commands import cli
from asgilook.commands import keys
from asgilook.errors import StorageUnavailable
from asgilook.storage.index import Entry
from asgilook.storage.index.sqlite import SQLiteIndex

KEY = re.compile(r'alk_[A-Za-z0-9_-]{43}')


def run(capsys, environ, *args):
    """``asgilook keys ARGS`` in this process: its status, stdout and stderr."""
    status = cli.main(['keys', *(str(arg) for arg in args)], environ)
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, environ, *args):
    status, out, _ = run(capsys, environ, *args, '--json')
    document = json.loads(out)
    assert document['status'] == status
    return document


def usage_error(capsys, environ, *args):
    """The message of a usage error (exit status 2) of ``asgilook keys ARGS``."""
    with pytest.raises(SystemExit) as exit:
        cli.main(['keys', *args], environ)
    assert exit.value.code == 2
    return capsys.readouterr().err


async def _stored(index):
    try:
        return await index.keys()
    finally:
        await index.close()


def stored(storage):
    """The keys that the SQLite index of ``storage`` holds."""
    return asyncio.run(_stored(SQLiteIndex(storage)))


async def _upload(index, owner, size, adopted):
    image_id = f'00000000-0000-0000-0000-{size:012d}'
    try:
        if adopted:
            entry = Entry(
                image_id,
                f'{image_id}.jpeg',
                (8, 8),
                1,
                'f' * 64,
                owner=owner,
                bytes=size,
            )
            assert await index.adopt(f'test {image_id}', [entry])
        else:
            await index.put(
                image_id, f'{image_id}.jpeg', (8, 8), 'f' * 64, owner=owner, bytes=size
            )
    finally:
        await index.close()


def upload(storage, owner, size, adopted=False):
    """An index entry of ``size`` bytes of the key ``owner``: uploaded, or
    adopted from another index (which no quota stops)."""
    asyncio.run(_upload(SQLiteIndex(storage), owner, size, adopted))


def recent(text):
    """Whether ``text`` is an ISO 8601 time in UTC, of the last minute."""
    when = datetime.datetime.fromisoformat(text)
    now = datetime.datetime.now(datetime.UTC)
    return when.utcoffset() == datetime.timedelta(0) and (
        now - datetime.timedelta(minutes=1) < when <= now
    )


@pytest.fixture
def storage(tmp_path):
    path = tmp_path / 'storage'
    path.mkdir()
    return path


@pytest.fixture
def environ(storage):
    return {'ASGI_LOOK_STORAGE_PATH': str(storage)}


# keys add


def test_the_key_is_printed_last_and_only_its_hash_is_stored(capsys, environ, storage):
    status, out, err = run(capsys, environ, 'add', 'alice', '--quota', '3MB')

    assert (status, err) == (0, '')
    *said, key = out.splitlines()
    assert KEY.fullmatch(key)
    assert said[0] == 'Added the upload key alice: quota 3 MB, no rate limit.'
    assert key not in '\n'.join(said)
    [kept] = stored(storage)
    assert kept.name == 'alice'
    assert kept.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (kept.quota, kept.rate, kept.admin, kept.revoked) == (
        3_000_000,
        None,
        False,
        None,
    )
    # Neither the database nor its journal holds the key itself.
    for path in storage.rglob('*'):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_every_key_is_new(capsys, environ):
    made = set()
    for name in ('a', 'b', 'c'):
        _, out, _ = run(capsys, environ, 'add', name)
        made.add(out.splitlines()[-1])
    assert len(made) == 3


def test_a_rate_and_admin_are_said_and_stored(capsys, environ, storage):
    status, out, _ = run(capsys, environ, 'add', 'ada', '--rate', '30', '--admin')

    assert status == 0
    assert out.splitlines()[0] == (
        'Added the upload key ada: no quota, 30 uploads a minute, '
        'admin (may delete any picture).'
    )
    [kept] = stored(storage)
    assert (kept.quota, kept.rate, kept.admin) == (None, 30, True)


def test_a_quota_of_nothing_is_a_quota(capsys, environ, storage):
    status, out, _ = run(capsys, environ, 'add', 'reader', '--quota', '0')

    assert status == 0
    assert out.splitlines()[0] == (
        'Added the upload key reader: quota 0 B, no rate limit.'
    )
    assert stored(storage)[0].quota == 0
    [listed] = run_json(capsys, environ, 'list')['keys']
    assert (listed['quota'], listed['left']) == (0, 0)


def test_add_as_json(capsys, environ, storage):
    document = run_json(
        capsys, environ, 'add', 'ci@build-1.x_y', '--quota', '1GiB', '--rate', '5'
    )

    assert document['command'] == 'keys add'
    assert (document['status'], document['problem']) == (0, None)
    assert KEY.fullmatch(document['secret'])
    made = document['key']
    assert recent(made.pop('created'))
    assert made == {
        'name': 'ci@build-1.x_y',
        'quota': 2**30,
        'used': 0,
        'left': 2**30,
        'rate': 5,
        'admin': False,
        'revoked': None,
    }
    [kept] = stored(storage)
    assert kept.key_hash == hashlib.sha256(document['secret'].encode()).hexdigest()


def test_a_name_is_never_used_twice(capsys, environ, storage):
    _, out, _ = run(capsys, environ, 'add', 'alice')
    first = out.splitlines()[-1]

    status, out, err = run(capsys, environ, 'add', 'alice', '--admin')
    assert (status, out) == (1, '')
    assert err == (
        'asgilook keys add: there is (or was) an upload key named alice, and '
        'names are never used twice: choose another\n'
    )
    # Not even a revoked key's.
    assert run(capsys, environ, 'revoke', 'alice')[0] == 0
    document = run_json(capsys, environ, 'add', 'alice')
    assert document == {
        'command': 'keys add',
        'key': None,
        'secret': None,
        'problem': 'there is (or was) an upload key named alice, and names are '
        'never used twice: choose another',
        'status': 1,
    }
    [kept] = stored(storage)
    assert kept.key_hash == hashlib.sha256(first.encode()).hexdigest()
    assert not kept.admin


# keys list


def test_list_shows_quota_used_left_rate_and_admin(capsys, environ, storage):
    run(capsys, environ, 'add', 'alice', '--quota', '3MB', '--rate', '5')
    run(capsys, environ, 'add', 'root', '--admin')
    upload(storage, 'alice', 1_200_000)

    status, out, err = run(capsys, environ, 'list')

    assert (status, err) == (0, '')
    header, alice, root, total = out.splitlines()
    assert header.split() == [
        'NAME',
        'QUOTA',
        'USED',
        'LEFT',
        'RATE',
        'ADMIN',
        'CREATED',
        'REVOKED',
    ]
    *cells, created, revoked = re.split(r'\s{2,}', alice)
    assert cells == ['alice', '3 MB', '1.2 MB', '1.8 MB', '5/min', 'no']
    assert recent(created)
    assert revoked == '-'
    assert re.split(r'\s{2,}', root)[:6] == ['root', 'none', '0 B', '-', 'none', 'yes']
    # The columns line up.
    assert alice.index('1.2 MB') == header.index('USED') == root.index('0 B')
    assert total == '2 keys, 0 of them revoked.'


def test_list_as_json(capsys, environ, storage):
    run(capsys, environ, 'add', 'alice', '--quota', '1MB')
    run(capsys, environ, 'add', 'bob', '--rate', '60', '--admin')
    upload(storage, 'alice', 1_500_000, adopted=True)

    document = run_json(capsys, environ, 'list')

    assert (document['command'], document['problem'], document['status']) == (
        'keys list',
        None,
        0,
    )
    for key in document['keys']:
        assert recent(key.pop('created'))
    assert document['keys'] == [
        # More than the quota (adopted from elsewhere, say): nothing left.
        {'name': 'alice', 'quota': 1_000_000, 'used': 1_500_000, 'left': 0,
         'rate': None, 'admin': False, 'revoked': None},
        {'name': 'bob', 'quota': None, 'used': 0, 'left': None,
         'rate': 60, 'admin': True, 'revoked': None},
    ]  # fmt: skip


def test_list_without_keys(capsys, environ):
    assert run(capsys, environ, 'list') == (
        0,
        'No upload keys yet: asgilook keys add NAME makes one.\n',
        '',
    )
    assert run_json(capsys, environ, 'list')['keys'] == []


# keys revoke


def test_revoke_and_revoke_again(capsys, environ, storage):
    run(capsys, environ, 'add', 'alice')
    run(capsys, environ, 'add', 'bob')

    status, out, err = run(capsys, environ, 'revoke', 'alice')

    assert (status, err) == (0, '')
    said = re.fullmatch(
        r'Revoked the upload key alice at (\S+): it is refused from now on; '
        r'its pictures stay.\n',
        out,
    )
    assert said and recent(said.group(1))
    when = said.group(1)
    alice, bob = stored(storage)
    assert alice.revoked is not None and bob.revoked is None
    _, out, _ = run(capsys, environ, 'list')
    assert re.split(r'\s{2,}', out.splitlines()[1])[-1] == when
    assert out.splitlines()[-1] == '2 keys, 1 of them revoked.'
    # Again: no error, and the first time stays.
    assert run(capsys, environ, 'revoke', 'alice') == (
        0,
        f'The upload key alice was revoked already, at {when}.\n',
        '',
    )
    document = run_json(capsys, environ, 'revoke', 'alice')
    assert document['already_revoked'] is True
    assert document['key']['revoked'] == when
    assert stored(storage)[0].revoked == alice.revoked


def test_revoke_as_json(capsys, environ):
    run(capsys, environ, 'add', 'alice', '--quota', '2MB')

    document = run_json(capsys, environ, 'revoke', 'alice')

    assert (document['command'], document['status'], document['problem']) == (
        'keys revoke',
        0,
        None,
    )
    assert document['already_revoked'] is False
    assert recent(document['key']['revoked'])
    assert document['key']['name'] == 'alice'
    assert document['key']['quota'] == 2_000_000


def test_revoking_no_such_key_fails(capsys, environ, storage):
    run(capsys, environ, 'add', 'alice')

    assert run(capsys, environ, 'revoke', 'bob') == (
        1,
        '',
        'asgilook keys revoke: there is no upload key named bob (asgilook keys '
        'list lists them)\n',
    )
    document = run_json(capsys, environ, 'revoke', 'bob')
    assert document == {
        'command': 'keys revoke',
        'key': None,
        'already_revoked': False,
        'problem': 'there is no upload key named bob (asgilook keys list lists them)',
        'status': 1,
    }
    assert [key.revoked for key in stored(storage)] == [None]


# Usage errors and what cannot start


@pytest.mark.parametrize(
    'args, message',
    [
        ([], 'the following arguments are required: ACTION'),
        (['add'], 'the following arguments are required: NAME'),
        (['add', ''], "'' is not a key name: 1 to 64 letters, digits"),
        (['add', 'a b'], "'a b' is not a key name"),
        (['add', 'a/b'], "'a/b' is not a key name"),
        (['add', 'émile'], "'émile' is not a key name"),
        (['add', 'a' * 65], 'is not a key name'),
        (['add', 'a\nb'], 'is not a key name'),
        (['revoke', 'a:b'], "'a:b' is not a key name"),
        (['add', 'a', '--quota', '3XB'], "'3XB' is not a size in bytes such as"),
        (['add', 'a', '--quota=-1MB'], "'-1MB' is not a size in bytes"),
        (['add', 'a', '--rate', '0'], "'0' is not a rate: a whole number of uploads"),
        (['add', 'a', '--rate', '1.5'], "'1.5' is not a rate"),
        (['add', 'a', '--rate', 'fast'], "'fast' is not a rate"),
        (['list', 'alice'], 'unrecognized arguments: alice'),
    ],
)
def test_usage_errors_exit_2(capsys, environ, storage, args, message):
    assert message in usage_error(capsys, environ, *args)
    assert stored(storage) == []


def test_names_of_64_characters_and_every_allowed_sign(capsys, environ, storage):
    names = ['a' * 64, 'A-Z_0.9@x', '@', '.']
    for name in names:
        assert run(capsys, environ, 'add', name)[0] == 0
    assert [key.name for key in stored(storage)] == names


def test_no_storage_directory_cannot_start(capsys, tmp_path):
    environ = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'nowhere')}

    for action in (['add', 'alice'], ['list'], ['revoke', 'alice']):
        status, out, err = run(capsys, environ, *action, '--json')
        assert (status, out) == (2, '')
        assert err == (
            f'asgilook keys {action[0]}: cannot start: there is no storage '
            f'directory {tmp_path / "nowhere"}\n'
        )
    assert not (tmp_path / 'nowhere').exists()


def test_the_storage_option_names_the_index(capsys, tmp_path, storage):
    other = tmp_path / 'other'
    other.mkdir()

    assert run(capsys, {}, 'add', 'alice', '--storage', other)[0] == 0
    assert [key.name for key in stored(other)] == ['alice']
    assert stored(storage) == []


def test_a_bad_setting_cannot_start(capsys, environ):
    environ = {**environ, 'ASGI_LOOK_UPLOADS': 'maybe'}

    status, out, err = run(capsys, environ, 'list')

    assert (status, out) == (2, '')
    assert err.startswith('asgilook keys list: cannot start: ')
    assert 'ASGI_LOOK_UPLOADS' in err


def test_an_index_that_cannot_be_used(capsys, environ, monkeypatch):
    class Unreachable:
        async def keys(self):
            raise StorageUnavailable('The database cannot be reached.')

        async def close(self):
            self.closed = True

    index = Unreachable()
    monkeypatch.setattr(keys, 'open_index', lambda config: index)

    status, out, err = run(capsys, environ, 'list')

    assert (status, out) == (1, '')
    assert err == (
        'asgilook keys list: the index cannot be used: The database cannot be reached\n'
    )
    assert index.closed
    assert run_json(capsys, environ, 'list') == {
        'command': 'keys list',
        'keys': [],
        'problem': 'the index cannot be used: The database cannot be reached',
        'status': 1,
    }


def test_an_index_of_a_newer_asgilook(capsys, environ, storage):
    connection = sqlite3.connect(storage / 'index.sqlite3')
    connection.execute('PRAGMA user_version = 99')
    connection.close()

    status, out, err = run(capsys, environ, 'add', 'alice')

    assert (status, out) == (1, '')
    assert err.startswith('asgilook keys add: the index cannot be used: ')
    assert 'has schema version 99' in err


def test_the_environment_is_read_and_never_written(capsys, environ):
    given = dict(environ)

    run(capsys, environ, 'add', 'alice')
    run(capsys, environ, 'list')

    assert environ == given


def test_help_has_examples_and_exit_statuses(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(['keys', '--help'], {})
    assert exit.value.code == 0
    help = capsys.readouterr().out
    assert 'asgilook keys add alice --quota 10GiB --rate 30' in help
    assert 'exit status:' in help
    with pytest.raises(SystemExit):
        cli.main(['--help'], {})
    assert 'add, list and revoke upload keys' in capsys.readouterr().out


def test_times_are_iso_8601_in_utc():
    assert keys.moment(0) == '1970-01-01T00:00:00+00:00'
    assert keys.moment(1_700_000_000_999_999) == '2023-11-14T22:13:20+00:00'


# The documentation

SHARING = pathlib.Path(__file__).parent.parent / 'docs' / 'sharing.rst'
#: What differs from one run to the next: keys and times.
VARYING = [
    (KEY, 'KEY'),
    (re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00'), 'TIME'),
]


def masked(lines):
    for pattern, mask in VARYING:
        lines = [pattern.sub(mask, line.strip()) for line in lines]
    return lines


def examples():
    """Each ``$ asgilook keys`` line of docs/sharing.rst, with the output shown."""
    lines = SHARING.read_text().splitlines()
    for at, line in enumerate(lines):
        if line.strip().startswith('$ asgilook keys '):
            shown = []
            for after in lines[at + 1 :]:
                if not after.strip() or after.strip().startswith('$ '):
                    break
                shown.append(after)
            yield line.strip()[2:], shown


def test_the_examples_of_the_docs_print_what_they_show(capsys, environ, storage):
    found = list(examples())
    # Made, then revoked, then listed: what the list shows.
    order = {'add': 0, 'revoke': 1, 'list': 2}
    found.sort(key=lambda example: order[example[0].split()[2]])
    assert [command.split()[2] for command, _ in found] == [
        'add', 'add', 'add', 'revoke', 'revoke', 'list', 'list'
    ]  # fmt: skip
    for at, (command, shown) in enumerate(found):
        if at == 5:
            # alice's pictures, as the list shows them.
            upload(storage, 'alice', 1_207_959_552, adopted=True)
        words, _, pipe = command.partition(' | ')
        status, out, err = run(capsys, environ, *shlex.split(words)[2:])
        assert (status, err) == (0, ''), command
        printed = out.splitlines()
        if pipe == 'tail -1':
            printed = printed[-1:]
        elif pipe.startswith('jq'):
            document = json.loads(out)
            printed = json.dumps(document['keys'][0], indent=2).splitlines()
        # NOTE: An example shown without its output is only run.
        assert masked(printed) == masked(shown) or shown == [], command


# PostgreSQL


@pytest.mark.postgres
def test_keys_in_postgres(capsys, postgres_server, tmp_path):
    from asgilook.storage.index.postgres import PostgresIndex

    url = postgres_server.database()
    # No storage directory is needed with a database (Config makes one).
    environ = {
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'nowhere'),
        'ASGI_LOOK_DATABASE_URL': url,
    }

    status, out, _ = run(capsys, environ, 'add', 'alice', '--quota', '10GiB')
    key = out.splitlines()[-1]
    assert status == 0 and KEY.fullmatch(key)
    assert run(capsys, environ, 'add', 'alice')[0] == 1
    assert run(capsys, environ, 'add', 'bob', '--database-url', url, '--admin')[0] == 0
    assert run(capsys, environ, 'revoke', 'bob')[0] == 0

    alice, bob = asyncio.run(_stored(PostgresIndex(url)))
    assert alice.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert (alice.quota, alice.revoked) == (10 * 2**30, None)
    assert bob.admin and bob.revoked is not None
    listed = run_json(capsys, environ, 'list')['keys']
    assert [(key['name'], key['left']) for key in listed] == [
        ('alice', 10 * 2**30),
        ('bob', None),
    ]
    assert recent(listed[1]['revoked'])

"""``asgilook backup`` and ``asgilook restore``.

The end-to-end test runs a real uvicorn taking uploads and deletions from
threads while ``python -m asgilook backup`` runs as a process of its own;
then a second uvicorn serves the backup, and must serve every picture it
lists byte for byte as the first one served it, and ``asgilook check`` finds
it clean. A second backup must copy exactly the objects that are new, leave
the others' files alone (same inodes) and remove the deleted ones'.

The other tests run the commands in this process (``cli.main``), with
:class:`~asgilook.storage.store.Store` making the pictures, and a real
PostgreSQL (tests/postgres.py) or SeaweedFS (tests/seaweed.py) where it
matters.
"""

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import httpx
import pytest

from asgilook.commands import backup
from asgilook.commands import backup_copy
from asgilook.commands import cli
from asgilook.commands import restore
from asgilook.errors import StorageUnavailable
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.crypto import is_sealed
from asgilook.storage.index import Entry
from asgilook.storage.index import UploadKey
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.helpers import stored_objects
from tests.index_contents import contents
from tests.index_contents import share
from tests.servers import Uvicorn
from tests.test_migrate import KEY_A
from tests.test_migrate_index import fill
from tests.test_migrate_index import postgres_entries
from tests.test_migrate_index import sqlite_entries
from tests.test_migrate_index import uid

MANIFEST_LINE = b'{"sha256": "ab", "id": "x", "delete_token": "secret"}'


def run(capsys, environ, *args):
    status = cli.main([str(arg) for arg in args], environ)
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, environ, *args):
    status, out, err = run(capsys, environ, *args, '--json')
    document = json.loads(out)
    assert document['status'] == status, err
    return document


def check(storage, *more):
    """``asgilook check`` on a storage directory, as a process: status, output."""
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'check', '--storage', str(storage),
         '--grace', '0', *more],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def storage(tmp_path):
    return tmp_path / 'storage'


@pytest.fixture
def environ(storage):
    return {'ASGI_LOOK_STORAGE_PATH': str(storage)}


@pytest.fixture
def tokens(environ, storage):
    found = asyncio.run(fill(environ))
    (storage / 'imported.jsonl').write_bytes(MANIFEST_LINE + b'\n')
    return found


@pytest.fixture
def dest(tmp_path):
    return tmp_path / 'backup'


# The end-to-end test: a service under load


class Load:
    """Uploads and deletions sent to a service from threads, until stopped.

    What the service served of each picture right after its upload (the
    original and its thumbnails) is kept, by id.
    """

    def __init__(self, url, seeded):
        self.url = url
        self.served = {}
        self.tokens = {}
        self.seeded = list(seeded)
        #: When each upload and deletion was answered (time.monotonic()).
        self.uploaded_at = []
        self.deleted_at = []
        self.errors = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded, args=(work,))
            for work in (self._upload, self._upload, self._delete)
        ]

    def upload(self, client):
        answer = client.post('/images', content=draw_image((200, 150)))
        assert answer.status_code == 201, answer.text
        document = answer.json()
        image_id = document['id']
        self.tokens[image_id] = document['delete_token']
        self.uploaded_at.append(time.monotonic())
        self.served[image_id] = {
            uri: client.get(uri).content
            for uri in [document['image'], *document['thumbnails']]
        }
        return image_id

    def _guarded(self, work):
        try:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                while not self._stop.is_set():
                    work(client)
        except Exception as ex:  # Told to the test, which fails.
            self.errors.append(ex)

    def _upload(self, client):
        self.upload(client)

    def _delete(self, client):
        if self.seeded:
            image_id = self.seeded.pop()
            headers = {'Authorization': f'Bearer {self.tokens[image_id]}'}
            assert client.delete(f'/images/{image_id}.jpeg', headers=headers).is_success
            self.deleted_at.append(time.monotonic())
        # NOTE: Paced, so that deletions go on while the backup runs.
        self._stop.wait(0.05)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join()
        assert self.errors == []


def backup_process(dest, storage):
    """``python -m asgilook backup DEST --json``, as a process of its own."""
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'backup', str(dest), '--json'],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, 'ASGI_LOOK_STORAGE_PATH': str(storage)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def inodes(root):
    return {
        path.relative_to(root).as_posix(): path.stat().st_ino
        for folder in ('images', 'thumbnails')
        for path in (root / folder).rglob('*')
        if path.is_file()
    }


@pytest.mark.e2e
def test_a_backup_taken_under_load_serves_every_picture_it_lists(
    tmp_path, redis_server, storage, dest
):
    server = Uvicorn(storage, f'{redis_server.url}/1')
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            load = Load(server.url, [])
            seeded = [load.upload(client) for _ in range(40)]
        load.seeded = seeded[:30]
        with load:
            started = time.monotonic()
            document = backup_process(dest, storage)
            ended = time.monotonic()
        assert any(started < t < ended for t in load.uploaded_at)
        assert any(started < t < ended for t in load.deleted_at)
        assert document['images'] >= 10

        # A second backup, with the service still up but idle: exactly what
        # is new is copied, what is gone removed, the rest left alone.
        before, kept = stored_objects(dest), inodes(dest)
        now = stored_objects(storage)
        second = backup_process(dest, storage)
        assert second['objects']['copied'] == len(now.keys() - before.keys())
        assert second['removed'] == len(before.keys() - now.keys())
        assert second['objects']['there'] == len(now.keys() & before.keys())
        assert stored_objects(dest) == now
        still = inodes(dest)
        assert all(still[key] == kept[key] for key in now.keys() & before.keys())
    finally:
        server.stop()

    status, out = check(dest)
    assert status == 0, out
    assert 'No problems found.' in out
    served = Uvicorn(dest, f'{redis_server.url}/2')
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            listed = client.get('/images').json()
            assert len(listed) == second['images']
            for image in listed:
                expected = load.served[image['id']]
                for uri in [image['image'], *image['thumbnails']]:
                    assert client.get(uri).content == expected[uri], uri
    finally:
        served.stop()


# In this process: what is left out, refused, copied again


def test_a_backup_is_a_storage_directory_with_the_manifest(
    capsys, environ, storage, dest, tokens
):
    status, out, err = run(capsys, environ, 'backup', dest)
    assert (status, err) == (0, '')
    assert '0 already there (0 bytes), 0 removed' in out
    assert 'the manifest of asgilook import, imported.jsonl, with it' in out
    assert f'Done: 5 pictures. Serve it with asgilook serve --storage {dest}' in out
    assert sqlite_entries(dest) == sqlite_entries(storage)
    assert stored_objects(dest) == stored_objects(storage)
    assert (dest / 'imported.jsonl').read_bytes() == MANIFEST_LINE + b'\n'
    assert (dest / 'imported.jsonl').stat().st_mode & 0o777 == 0o600
    marker = json.loads((dest / 'asgilook-backup.json').read_text())
    assert (marker['finished'], marker['images']) == (True, 5)
    assert not (dest / '.backup-partial').exists()
    assert not (dest / 'index.sqlite3-wal').exists()
    assert check(dest)[0] == 0

    # The manifest gone from the storage is gone from the next backup too.
    (storage / 'imported.jsonl').unlink()
    document = run_json(capsys, environ, 'backup', dest)
    assert (document['manifest'], document['objects']['copied']) == (False, 0)
    assert not (dest / 'imported.jsonl').exists()


def after_the_snapshot(monkeypatch, change):
    """Run ``change`` once the backup's snapshot is taken, before the copy."""
    snapshot = backup.snapshot

    async def changed(config, partial):
        await snapshot(config, partial)
        await change(Store(config))

    monkeypatch.setattr(backup, 'snapshot', changed)


def test_pictures_deleted_or_replaced_meanwhile_are_left_out(
    capsys, monkeypatch, environ, storage, dest, tokens
):
    async def change(store):
        try:
            await store.delete(uid('first'), tokens['first'])
            await store.save(uid('second'), draw_image((120, 90)))
        finally:
            await store.process_shutdown(None, None)

    after_the_snapshot(monkeypatch, change)
    document = run_json(capsys, environ, 'backup', dest)
    assert document['left_out'] == sorted([uid('first'), uid('second')])
    assert document['images'] == 3
    assert uid('first') not in {entry.image_id for entry in sqlite_entries(dest)}
    status, out = check(dest)
    assert status == 0, out


def test_a_version_whose_thumbnails_went_meanwhile_is_left_out(
    capsys, monkeypatch, environ, storage, dest, tokens
):
    entry = sqlite_entries(storage)[-1]
    assert entry.image_id == uid('replaced')
    original = (storage / 'images' / entry.file).read_bytes()

    async def change(store):
        try:
            await store.delete(entry.image_id, tokens['replaced'])
        finally:
            await store.process_shutdown(None, None)
        # The deletion caught half-way: the thumbnails gone, the original not.
        (storage / 'images' / entry.file).write_bytes(original)

    after_the_snapshot(monkeypatch, change)
    status, out, _ = run(capsys, environ, 'backup', dest)
    assert status == 0
    assert 'left out, deleted or replaced while it ran: 1' in out
    assert entry.image_id not in {found.image_id for found in sqlite_entries(dest)}
    status, out = check(dest)
    assert status == 0, out


def test_damage_in_the_storage_is_no_reason_to_leave_a_picture_out(
    capsys, environ, storage, dest, tokens
):
    second, first = sqlite_entries(storage)[1], sqlite_entries(storage)[-1]
    shutil.rmtree(storage / 'thumbnails' / first.file.removesuffix('.jpeg'))
    (storage / 'images' / second.file).unlink()
    document = run_json(capsys, environ, 'backup', dest)
    # Still listed, the first is kept (check --repair renders its thumbnails);
    # the second has no picture to back up.
    assert document['left_out'] == [second.image_id]
    status, out = check(dest)
    assert status == 1
    assert 'thumbnail' in out


def test_what_the_next_snapshot_no_longer_names_is_removed(
    capsys, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    entry = sqlite_entries(storage)[-1]
    stem = entry.file.removesuffix('.jpeg')
    orphan = dest / 'images' / 'gone.123456.jpeg'
    orphan.write_bytes(b'left by nobody')
    (dest / 'images' / f'.{entry.file}.abcd.partial').write_bytes(b'half')
    (dest / 'thumbnails' / stem / '.80x60.jpeg.abcd.partial').write_bytes(b'half')
    (dest / 'thumbnails' / 'gone.123456').mkdir()
    (dest / 'thumbnails' / 'gone.123456' / '80x60.jpeg').write_bytes(b'old')
    document = run_json(capsys, environ, 'backup', dest)
    assert document['removed'] == 3
    assert stored_objects(dest) == stored_objects(storage)
    assert not list((dest / 'thumbnails' / stem).glob('.*'))
    status, out = check(dest)
    assert status == 0, out


def test_verify_compares_the_bytes_of_what_is_there(
    capsys, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    entry = sqlite_entries(storage)[0]
    damaged = dest / 'images' / entry.file
    data = damaged.read_bytes()
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert run_json(capsys, environ, 'backup', dest)['objects']['copied'] == 0
    document = run_json(capsys, environ, 'backup', dest, '--verify')
    # Seven objects, and the five uploads kept as they came.
    assert (document['objects']['copied'], document['objects']['there']) == (1, 12)
    assert damaged.read_bytes() == data


def test_sealed_objects_stay_sealed(capsys, tmp_path, dest):
    keyed = {
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'sealed'),
        'ASGI_LOOK_ENCRYPTION_KEY': KEY_A,
    }
    asyncio.run(fill(keyed, ['a', 'b']))
    status, out, _ = run(capsys, keyed, 'backup', dest)
    assert status == 0
    assert 'Serve it (with the same encryption keys) with asgilook serve' in out
    stored = stored_objects(dest)
    assert stored == stored_objects(tmp_path / 'sealed')
    assert all(is_sealed(data) for data in stored.values())
    marker = json.loads((dest / 'asgilook-backup.json').read_text())
    assert marker['sealed_objects_need_the_keys'] is True


def test_a_failure_leaves_the_last_backup_whole(
    capsys, monkeypatch, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    last = sqlite_entries(dest)
    asyncio.run(fill(environ, ['newer']))

    async def failing(self, key, data):
        raise StorageUnavailable('The image store cannot be used right now (full).')

    monkeypatch.setattr(LocalBlobs, 'put', failing)
    status, out, _ = run(capsys, environ, 'backup', dest)
    assert status == 1
    assert (
        'Failed: The image store cannot be used right now (full). The last backup '
        f'in {dest} is whole; run it again to go on.' in out
    )
    assert sqlite_entries(dest) == last
    monkeypatch.undo()
    document = run_json(capsys, environ, 'backup', dest)
    assert document['images'] == 6
    status, out = check(dest)
    assert status == 0, out


def test_ctrl_c_interrupts_a_backup(capsys, monkeypatch, environ, dest, tokens):
    async def interrupted(config, partial):
        raise KeyboardInterrupt

    monkeypatch.setattr(backup, 'snapshot', interrupted)
    document = run_json(capsys, environ, 'backup', dest)
    assert (document['status'], document['problem']) == (
        130,
        'interrupted: run it again to go on',
    )
    # A first run that stopped left a backup to go on with.
    monkeypatch.undo()
    assert run(capsys, environ, 'backup', dest)[0] == 0


@pytest.mark.parametrize(
    'where, message',
    [
        ('file', 'is not a directory'),
        ('other', 'is neither empty nor a backup (it has no asgilook-backup.json)'),
        ('storage/images/backup', 'is where the service keeps its pictures'),
        ('storage', 'is neither empty nor a backup'),
    ],
)
def test_a_destination_that_is_not_a_backup_is_refused(
    capsys, tmp_path, environ, tokens, where, message
):
    (tmp_path / 'file').write_text('')
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'mine').write_text('')
    status, out, err = run(capsys, environ, 'backup', tmp_path / where)
    assert (status, out) == (2, '')
    assert message in err


def test_the_storage_itself_is_refused_even_as_a_backup(
    capsys, environ, storage, tokens
):
    (storage / 'asgilook-backup.json').write_text('{}')
    status, _, err = run(capsys, environ, 'backup', storage)
    assert status == 2
    assert 'is where the service keeps its pictures' in err


def test_no_index_no_backup(capsys, tmp_path, environ, storage, dest):
    storage.mkdir()
    status, _, err = run(capsys, environ, 'backup', dest)
    assert status == 2
    assert f'there is no index in {storage}: is it a storage directory?' in err


# Restore


def test_restore_into_a_storage_directory(
    capsys, tmp_path, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    target = tmp_path / 'restored'
    (target).mkdir()
    (target / 'imported.jsonl').write_bytes(b'{"sha256": "cd"}\n')
    into = {'ASGI_LOOK_STORAGE_PATH': str(target)}
    status, out, _ = run(capsys, into, 'restore', dest)
    assert status == 0
    assert '13 objects copied' in out
    assert '5 index entries copied, 0 already there' in out
    assert '1 lines added to the manifest of asgilook import' in out
    assert sqlite_entries(target) == sqlite_entries(storage)
    assert stored_objects(target) == stored_objects(storage)
    assert (target / 'imported.jsonl').read_bytes() == (
        b'{"sha256": "cd"}\n' + MANIFEST_LINE + b'\n'
    )
    status, out = check(target)
    assert status == 0, out
    # The backup was only read: no WAL, no lock beside its index.
    assert sorted(path.name for path in dest.iterdir()) == [
        'asgilook-backup.json',
        'images',
        'imported.jsonl',
        'index.sqlite3',
        'thumbnails',
    ]


def test_restore_refuses_an_index_with_other_pictures(
    capsys, tmp_path, environ, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    other = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'other')}
    asyncio.run(fill(other, ['mine', 'first']))
    status, _, err = run(capsys, other, 'restore', dest)
    assert status == 2
    assert 'is not empty (entry 1 differs' in err
    assert 'restore into an empty one, or add --merge' in err
    # --merge adds what it lacks, and leaves its own "first" as it is.
    mine = sqlite_entries(tmp_path / 'other')
    document = run_json(capsys, other, 'restore', dest, '--merge')
    assert document['entries'] == {'copied': 4, 'already_there': 1}
    merged = sqlite_entries(tmp_path / 'other')
    assert merged[:2] == mine
    assert len(merged) == 6
    status, out = check(tmp_path / 'other')
    assert status == 0, out


def test_a_backup_and_its_restore_carry_keys_visibility_and_the_secret(
    capsys, tmp_path, environ, storage, dest, tokens
):
    shared = share(storage)
    document = run_json(capsys, environ, 'backup', dest)
    assert (document['status'], document['images']) == (0, 5)
    target = tmp_path / 'restored'
    into = {'ASGI_LOOK_STORAGE_PATH': str(target)}
    status, out, _ = run(capsys, into, 'restore', dest)
    assert status == 0
    assert '5 index entries copied, 0 already there' in out
    assert '2 upload keys copied' in out
    assert asyncio.run(contents(SQLiteIndex(target))) == shared
    assert asyncio.run(contents(SQLiteIndex(dest))) == shared


def test_a_merge_adds_the_keys_it_lacks_and_keeps_its_own_secret(
    capsys, tmp_path, environ, storage, dest, tokens
):
    shared = share(storage)
    assert run(capsys, environ, 'backup', dest)[0] == 0
    root = tmp_path / 'other'
    other = {'ASGI_LOOK_STORAGE_PATH': str(root)}
    asyncio.run(fill(other, ['mine']))

    async def own_key():
        index = SQLiteIndex(root)
        try:
            await index.add_key(UploadKey('alice', 'its-own-hash'))
            return await index.url_secret()
        finally:
            await index.close()

    secret = asyncio.run(own_key())
    document = run_json(capsys, other, 'restore', dest, '--merge')
    assert (document['status'], document['keys_copied']) == (0, 1)
    entries, keys, kept = asyncio.run(contents(SQLiteIndex(root)))
    assert kept == secret != shared[2]
    assert [(key.name, key.key_hash, key.used) for key in keys] == [
        ('alice', 'its-own-hash', 4000),
        ('bob', 'hash-bob', 2000),
    ]
    assert entries[1:] == shared[0]


def test_restore_of_a_damaged_backup_fails(capsys, tmp_path, environ, dest, tokens):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    entry = sqlite_entries(dest)[0]
    (dest / 'images' / entry.file).unlink()
    into = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'restored')}
    status, out, _ = run(capsys, into, 'restore', dest)
    assert status == 1
    assert (
        'Failed: 1 pictures of the backup lack their original or animation '
        f'(the first: {entry.image_id}); run asgilook check --storage {dest}' in out
    )
    assert (
        not (tmp_path / 'restored' / 'index.sqlite3').exists()
        or sqlite_entries(tmp_path / 'restored') == []
    )


def test_restore_that_cannot_start(capsys, tmp_path, environ, storage, dest, tokens):
    status, _, err = run(capsys, environ, 'restore', dest)
    assert status == 2
    assert f'{dest} is no backup: it has no index.sqlite3' in err
    status, _, err = run(capsys, environ, 'restore', storage)
    assert status == 2
    assert f'{storage} is the storage directory itself' in err


def test_restore_interrupted_then_failing_then_done(
    capsys, monkeypatch, tmp_path, environ, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    into = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'restored')}

    async def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(restore, 'copy_all', interrupted)
    assert run_json(capsys, into, 'restore', dest)['status'] == 130

    async def failing(*args):
        raise StorageUnavailable('The image store cannot be used right now.')

    monkeypatch.setattr(restore, 'copy_all', failing)
    document = run_json(capsys, into, 'restore', dest)
    assert (
        document['problem']
        == 'The image store cannot be used right now. Run it again to go on.'
    )
    monkeypatch.undo()
    (dest / 'imported.jsonl').unlink()
    assert run_json(capsys, into, 'restore', dest)['verified'] is True
    assert not (tmp_path / 'restored' / 'imported.jsonl').exists()
    # Once more: everything is there, nothing is written.
    (dest / 'imported.jsonl').write_bytes(MANIFEST_LINE + b'\n')
    document = run_json(capsys, into, 'restore', dest)
    assert document['objects']['copied'] == 0
    assert document['entries'] == {'copied': 0, 'already_there': 5}
    assert document['manifest_lines_added'] == 1
    document = run_json(capsys, into, 'restore', dest)
    assert document['manifest_lines_added'] == 0


def test_a_merge_that_does_not_add_fails(
    capsys, monkeypatch, tmp_path, environ, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    other = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'other')}
    asyncio.run(fill(other, ['mine']))

    async def nothing(self, source, entries):
        return True

    monkeypatch.setattr(SQLiteIndex, 'adopt', nothing)
    document = run_json(capsys, other, 'restore', dest, '--merge')
    assert document['status'] == 1
    assert (
        document['problem'] == f'{uid("first")} was not added. Run it again to go on.'
    )


def test_restore_with_the_renditions_apart(
    capsys, tmp_path, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    apart = {
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'restored'),
        'ASGI_LOOK_RENDITIONS_URL': str(tmp_path / 'renditions'),
    }
    status, out, _ = run(capsys, apart, 'restore', dest)
    assert status == 0
    assert (
        f'storage {tmp_path / "restored"} (renditions: {tmp_path / "renditions"})'
        in out
    )
    assert list((tmp_path / 'renditions' / 'thumbnails').rglob('*.jpeg'))
    assert list((tmp_path / 'renditions' / 'images').glob('*.webp'))
    # And back up from there: the same backup.
    again = tmp_path / 'again'
    assert run(capsys, apart, 'backup', again)[0] == 0
    assert stored_objects(again) == stored_objects(dest)


class Vanishing(LocalBlobs):
    """A directory whose objects go between a look at them and their reading."""

    async def open(self, key, whole_up_to, start=0, end=None):
        return None

    async def list(self, prefix=''):
        yield Listed(f'{prefix}gone.jpeg', 10, 0.0)


def test_an_object_that_goes_while_it_is_copied_is_not_there(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / 'a.1.jpeg').write_bytes(b'jpeg')
    source = backup_copy.Raw(Vanishing(tmp_path), Vanishing(tmp_path))
    target = backup_copy.Raw.directory(tmp_path / 'copy')
    entry = Entry('a', 'a.1.jpeg', (640, 480), 1, 'hash')
    counts = backup_copy.Counts()
    for verify in (False, True):
        copied = asyncio.run(
            backup_copy.copy_version(entry, source, target, verify, counts)
        )
        assert (copied.whole, copied.thumbnails) == (False, frozenset())
    assert counts == backup_copy.Counts()
    assert not (tmp_path / 'copy').exists()


def test_each_command_is_given_its_options(monkeypatch):
    called = {}

    def fake(*positional, **options):
        called.update(options, positional=positional)
        return 7

    monkeypatch.setattr(backup, 'run', fake)
    monkeypatch.setattr(restore, 'run', fake)
    environ = {
        'ASGI_LOOK_STORAGE_PATH': 'here',
        'ASGI_LOOK_DATABASE_URL': 'postgresql://db/x',
    }
    assert cli.main(['backup', 'there', '--jobs', '2', '--verify'], environ) == 7
    assert called['positional'] == (pathlib.Path('there'),)
    assert (called['jobs'], called['verify'], called['database_url']) == (
        2,
        True,
        'postgresql://db/x',
    )
    assert (
        cli.main(
            ['restore', 'there', '--merge', '--json', '--storage', 'else'], environ
        )
        == 7
    )
    assert (called['merge'], called['as_json'], called['storage']) == (
        True,
        True,
        pathlib.Path('else'),
    )


# PostgreSQL


@pytest.mark.postgres
def test_a_postgres_index_is_backed_up_from_one_snapshot(
    capsys, monkeypatch, postgres_server, environ, storage, dest, tokens
):
    url = postgres_server.database()
    assert run(capsys, environ, 'migrate', '--to-database', url)[0] == 0
    on_postgres = {**environ, 'ASGI_LOOK_DATABASE_URL': url}
    monkeypatch.setattr(backup, 'PAGE', 2)
    document = run_json(capsys, on_postgres, 'backup', dest)
    assert (document['status'], document['images']) == (0, 5)
    assert document['index']['kind'] == 'PostgreSQL'
    assert sqlite_entries(dest) == postgres_entries(url)
    status, out = check(dest)
    assert status == 0, out


@pytest.mark.postgres
def test_a_postgres_backup_and_restore_carry_keys_visibility_and_the_secret(
    capsys, tmp_path, postgres_server, environ, storage, dest, tokens
):
    from asgilook.storage.index.postgres import PostgresIndex

    shared = share(storage)
    url = postgres_server.database()
    assert run(capsys, environ, 'migrate', '--to-database', url)[0] == 0
    on_postgres = {**environ, 'ASGI_LOOK_DATABASE_URL': url}
    assert run_json(capsys, on_postgres, 'backup', dest)['status'] == 0
    assert asyncio.run(contents(SQLiteIndex(dest))) == shared
    again = postgres_server.database()
    into = {
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'restored'),
        'ASGI_LOOK_DATABASE_URL': again,
    }
    document = run_json(capsys, into, 'restore', dest)
    assert (document['status'], document['keys_copied']) == (0, 2)
    assert asyncio.run(contents(PostgresIndex(again))) == shared


@pytest.mark.postgres
def test_a_postgres_index_that_cannot_be_read(
    capsys, postgres_server, environ, dest, tokens
):
    empty = {**environ, 'ASGI_LOOK_DATABASE_URL': postgres_server.database()}
    status, out, _ = run(capsys, empty, 'backup', dest)
    assert status == 1
    assert 'Failed: The index cannot be read (relation "images" does not exist)' in out
    gone = {
        **environ,
        'ASGI_LOOK_DATABASE_URL': postgres_server.url.rsplit(':', 1)[0] + ':1/x',
    }
    status, out, _ = run(capsys, gone, 'backup', dest)
    assert status == 1
    assert 'Failed: The database cannot be reached' in out


@pytest.mark.postgres
@pytest.mark.e2e
def test_restore_into_postgres_and_the_tokens_delete(
    capsys, tmp_path, postgres_server, redis_server, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    url = postgres_server.database()
    target = tmp_path / 'restored'
    into = {'ASGI_LOOK_STORAGE_PATH': str(target), 'ASGI_LOOK_DATABASE_URL': url}
    document = run_json(capsys, into, 'restore', dest)
    assert (document['status'], document['verified']) == (0, True)
    assert postgres_entries(url) == sqlite_entries(storage)
    assert not (target / 'index.sqlite3').exists()
    server = Uvicorn(
        target, f'{redis_server.url}/3', env={'ASGI_LOOK_DATABASE_URL': url}
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for entry in sqlite_entries(storage):
                served = client.get(f'/images/{entry.image_id}.jpeg').content
                assert served == (storage / 'images' / entry.file).read_bytes()
            headers = {'Authorization': f'Bearer {tokens["last"]}'}
            assert client.delete(
                f'/images/{uid("last")}.jpeg', headers=headers
            ).is_success
    finally:
        server.stop()
    status, out = check(target, '--database-url', url)
    assert status == 0, out


# A bucket


@pytest.mark.s3
def test_restore_into_a_bucket_and_back_up_from_it(
    capsys, tmp_path, seaweed_server, bucket, environ, storage, dest, tokens
):
    assert run(capsys, environ, 'backup', dest)[0] == 0
    s3 = {
        **seaweed_server.environ,
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'local'),
        'ASGI_LOOK_STORAGE_URL': bucket,
    }
    document = run_json(capsys, s3, 'restore', dest)
    # Eight objects, and the five uploads kept as they came.
    assert (document['status'], document['objects']['copied']) == (0, 13)
    assert document['storage'] == bucket
    again = tmp_path / 'again'
    document = run_json(capsys, s3, 'backup', again)
    assert (document['status'], document['images']) == (0, 5)
    assert stored_objects(again) == stored_objects(storage)
    assert sqlite_entries(again) == sqlite_entries(storage)

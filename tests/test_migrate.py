"""``asgilook migrate`` and ``asgilook rekey``, run in this process on real stores.

The pictures are uploaded with a :class:`~asgilook.storage.store.Store` (a
few stills and an animation, with their thumbnails); the commands run with
``cli.main([...], environ)``; then a Store on the new place (or with the new
keys) must serve every original, thumbnail and animation byte for byte.
"""

import asyncio
import base64
import functools
import importlib
import json
import os
import pathlib
import re
import signal
import uuid

import pytest
import rich.console

from asgilook.commands import cli
from asgilook.commands import migrate
from asgilook.commands import objects_output
from asgilook.commands import objects_walk
from asgilook.config import Config
from asgilook.errors import DamagedObject
from asgilook.errors import StorageUnavailable
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.crypto import is_sealed
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.helpers import stored_objects
from tests.test_placeholders import gif

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()
IDS = ('picture-0', 'picture-1', 'animated')
#: Two stills of two thumbnails each; an animation, its thumbnail, its WebP;
#: and each upload kept as it came (two PNGs, a GIF).
OBJECTS = 12
WHOLE = 1 << 40
SOI = b'\xff\xd8'


def run(capsys, environ, *args):
    """Run ``asgilook ARGS`` in this process; its status, stdout and stderr."""
    status = cli.main([str(arg) for arg in args], environ)
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys, environ, *args):
    status, out, err = run(capsys, environ, *args, '--json')
    document = json.loads(out)
    assert document['status'] == status
    return status, document, err


def settings(storage, **more):
    """The environment of a service on ``storage``, with ``more`` settings."""
    return {'ASGI_LOOK_STORAGE_PATH': str(storage), **more}


async def upload(environ, ids=IDS):
    """Store a picture under each id (an animation for 'animated')."""
    store = Store(Config.from_environ(environ))
    try:
        for image_id in ids:
            if image_id == 'animated':
                data = gif(['red', 'lime', 'blue'], size=(256, 128))
            else:
                data = draw_image((640, 400))
            await store.save(image_id, data)
    finally:
        await store.process_shutdown(None, None)


async def served(environ, ids=IDS):
    """What a service with ``environ`` serves of each image, read whole."""
    store = Store(Config.from_environ(environ))
    found = {}
    try:
        for image_id in ids:
            image = await store.get(image_id)
            _, content = await store.read(image, None, whole_up_to=WHOLE)
            found[image_id] = content.body
            for size in image.thumbnail_sizes():
                content = await store.read_rendition(image, size, 'jpeg', WHOLE)
                found[f'{image_id} {size}'] = content.body
            if image.animated:
                content = await store.read_animation(image, WHOLE)
                found[f'{image_id} animation'] = content.body
            content = await store.read_kept(image, WHOLE)
            found[f'{image_id} kept'] = content.body
    finally:
        await store.process_shutdown(None, None)
    assert len(found) == OBJECTS
    return found


@pytest.fixture
def source(tmp_path):
    """A storage directory with pictures uploaded; its environment."""
    environ = settings(tmp_path / 'source')
    asyncio.run(upload(environ))
    return environ


@pytest.fixture
def storage(source):
    return pathlib.Path(source['ASGI_LOOK_STORAGE_PATH'])


def failing_puts(monkeypatch, after):
    """Make local writes fail after the first ``after``."""
    put = LocalBlobs.put
    tried = []

    async def flaky(self, key, data):
        tried.append(key)
        if len(tried) > after:
            raise StorageUnavailable('The disk is gone.')
        await put(self, key, data)

    monkeypatch.setattr(LocalBlobs, 'put', flaky)


def deleted_when_listed(monkeypatch, victim):
    """Make the local listing delete ``victim`` just after it lists it.

    NOTE: A thumbnail: before a walk, the commands list an object of images/.
    """
    assert victim.startswith('thumbnails/')
    listing = LocalBlobs.list

    async def list_then_delete(self, prefix=''):
        async for listed in listing(self, prefix):
            if listed.key == victim:
                os.unlink(self.path(victim))
            yield listed

    monkeypatch.setattr(LocalBlobs, 'list', list_then_delete)


# asgilook migrate


def test_local_to_local_serves_every_picture_byte_for_byte(capsys, tmp_path, source):
    target = tmp_path / 'target'

    status, out, err = run(capsys, source, 'migrate', '--to', target)

    assert status == 0, out + err
    assert out.startswith(f'From {source["ASGI_LOOK_STORAGE_PATH"]} to {target}:\n')
    assert re.search(rf'^ *{OBJECTS} +copied +\d+\.\d kB$', out, re.M)
    assert re.search(r'^ *0 +already there', out, re.M)
    assert re.search(r'^ *0 +failed', out, re.M)
    assert f'serve them with ASGI_LOOK_STORAGE_URL={target}' in out
    assert err == ''
    moved = {**source, 'ASGI_LOOK_STORAGE_URL': str(target)}
    assert asyncio.run(served(moved)) == asyncio.run(served(source))
    assert len(stored_objects(target)) == OBJECTS
    # The index stays where it is: it names objects by key.
    assert not (target / 'index.sqlite3').exists()

    status, out, err = run(capsys, source, 'migrate', '--to', target)
    assert status == 0
    assert re.search(r'^ *0 +copied', out, re.M)
    assert re.search(rf'^ *{OBJECTS} +already there', out, re.M)

    # What was uploaded meanwhile is copied by another run.
    asyncio.run(upload(source, ['late']))
    status, document, err = run_json(capsys, source, 'migrate', '--to', target)
    assert document['objects'] == {
        'copied': 4,
        'already_there': OBJECTS,
        'gone': 0,
        'failed': 0,
    }


def test_the_json_document(capsys, tmp_path, source, storage):
    status, document, err = run_json(
        capsys, source, 'migrate', '--to', tmp_path / 'target', '--jobs', 1
    )

    assert status == 0
    copied = sum(len(data) for data in stored_objects(storage).values())
    assert document == {
        'command': 'migrate',
        'from': {'originals': str(storage), 'renditions': str(storage)},
        'to': {
            'originals': str(tmp_path / 'target'),
            'renditions': str(tmp_path / 'target'),
        },
        'objects': {'copied': OBJECTS, 'already_there': 0, 'gone': 0, 'failed': 0},
        'bytes': {'copied': copied, 'already_there': 0, 'gone': 0, 'failed': 0},
        'failures': [],
        'stopped': None,
        'interrupted': False,
        'status': 0,
    }


def test_encryption_at_the_destination(capsys, tmp_path, source):
    target = tmp_path / 'target'
    keyed = {**source, 'ASGI_LOOK_ENCRYPTION_KEY': KEY_A}

    status, document, err = run_json(capsys, keyed, 'migrate', '--to', target)

    assert document['objects']['copied'] == OBJECTS
    stored = stored_objects(target)
    assert len(stored) == OBJECTS
    assert not any(data.startswith(SOI) for data in stored.values())
    assert all(is_sealed(data) for data in stored.values())
    plain = stored_objects(source['ASGI_LOOK_STORAGE_PATH'])
    assert not any(plain[key][:64] in stored[key] for key in plain)
    moved = {**keyed, 'ASGI_LOOK_STORAGE_URL': str(target)}
    assert asyncio.run(served(moved)) == asyncio.run(served(source))
    with pytest.raises(DamagedObject):
        asyncio.run(served({**source, 'ASGI_LOOK_STORAGE_URL': str(target)}))

    status, document, err = run_json(capsys, keyed, 'migrate', '--to', target)
    assert document['objects']['already_there'] == OBJECTS


def test_renditions_to_splits_them(capsys, tmp_path, source):
    originals, renditions = tmp_path / 'originals', tmp_path / 'renditions'

    status, out, err = run(
        capsys, source, 'migrate', '--to', originals, '--renditions-to', renditions
    )

    assert status == 0, out
    assert f'renditions from {source["ASGI_LOOK_STORAGE_PATH"]} to {renditions}:' in out
    assert f'and ASGI_LOOK_RENDITIONS_URL={renditions}' in out
    # The JPEGs, and the uploads kept beside them.
    assert {key.rpartition('.')[2] for key in stored_objects(originals)} == {
        'jpeg',
        'original',
    }
    assert len(stored_objects(originals)) == 6
    assert {key.split('/')[0] for key in stored_objects(renditions)} == {
        'images',
        'thumbnails',
    }
    assert len(stored_objects(renditions)) == OBJECTS - 6
    moved = {
        **source,
        'ASGI_LOOK_STORAGE_URL': str(originals),
        'ASGI_LOOK_RENDITIONS_URL': str(renditions),
    }
    assert asyncio.run(served(moved)) == asyncio.run(served(source))


def test_renditions_kept_apart_are_copied_from_there(capsys, tmp_path):
    apart = settings(
        tmp_path / 'source', ASGI_LOOK_RENDITIONS_URL=str(tmp_path / 'renditions')
    )
    asyncio.run(upload(apart))
    # A thumbnail left with the originals, before they were put apart: the
    # service never reads it, and it is not copied.
    stale = tmp_path / 'source' / 'thumbnails' / 'old.0' / '64x64.jpeg'
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b'stale')
    target = tmp_path / 'target'

    status, out, err = run(
        capsys, apart, 'migrate', '--to', target, '--renditions-to', f'{target}/'
    )

    assert status == 0, out
    assert f'renditions from {tmp_path / "renditions"} to {target}:' in out
    assert '(ASGI_LOOK_RENDITIONS_URL unset)' in out
    assert len(stored_objects(target)) == OBJECTS
    moved = settings(tmp_path / 'source', ASGI_LOOK_STORAGE_URL=str(target))
    assert asyncio.run(served(moved)) == asyncio.run(served(apart))


def test_a_failed_run_goes_on_where_it_stopped(capsys, tmp_path, source, monkeypatch):
    target = tmp_path / 'target'
    failing_puts(monkeypatch, after=2)
    monkeypatch.setattr(objects_walk, 'STOP_AFTER', OBJECTS)

    status, out, err = run(capsys, source, 'migrate', '--to', target)

    assert status == 1
    assert re.search(r'^ *2 +copied', out, re.M)
    assert re.search(rf'^ *{OBJECTS - 2} +failed', out, re.M)
    assert re.search(
        rf'(images|thumbnails)/\S+ +│ {source["ASGI_LOOK_STORAGE_PATH"]} +│ cannot '
        rf'copy it to {target}: The disk is gone\.',
        out,
    )
    assert f'... and {OBJECTS - 2 - 5} more (--json lists all).' in out
    assert out.endswith(
        f'{OBJECTS - 2} objects failed: run the same command again to copy them.\n'
    )

    monkeypatch.undo()
    status, document, err = run_json(capsys, source, 'migrate', '--to', target)
    assert status == 0
    assert document['objects']['copied'] == OBJECTS - 2
    assert document['objects']['already_there'] == 2
    moved = {**source, 'ASGI_LOOK_STORAGE_URL': str(target)}
    assert asyncio.run(served(moved)) == asyncio.run(served(source))


def test_a_storage_that_keeps_failing_stops_the_run(
    capsys, tmp_path, source, monkeypatch
):
    failing_puts(monkeypatch, after=0)
    monkeypatch.setattr(objects_walk, 'STOP_AFTER', 3)
    monkeypatch.setattr(objects_walk, 'KEPT', 2)

    status, document, err = run_json(
        capsys, source, 'migrate', '--to', tmp_path / 'target', '--jobs', 1
    )

    assert status == 1
    assert document['objects']['failed'] == 3
    assert len(document['failures']) == 2
    assert document['stopped'] == (
        f'3 objects failed in a row, the last: cannot copy it to '
        f'{tmp_path / "target"}: The disk is gone.'
    )


def test_the_summary_lists_the_first_failures(capsys, tmp_path, source, monkeypatch):
    failing_puts(monkeypatch, after=0)
    monkeypatch.setattr(objects_walk, 'KEPT', 7)
    monkeypatch.setattr(objects_walk, 'STOP_AFTER', OBJECTS + 1)

    status, out, err = run(capsys, source, 'migrate', '--to', tmp_path / 'target')

    assert status == 1
    assert f'... and {OBJECTS - 5} more (--json lists the first 7).' in out
    assert 'Stopped:' not in out


def test_a_listing_that_fails_stops_the_run(capsys, tmp_path, source, monkeypatch):
    listing = LocalBlobs.list

    async def broken(self, prefix=''):
        async for listed in listing(self, prefix):
            yield listed
        if prefix == 'thumbnails/':
            raise StorageUnavailable('The disk is gone.')

    monkeypatch.setattr(LocalBlobs, 'list', broken)

    status, out, err = run(capsys, source, 'migrate', '--to', tmp_path / 'target')

    assert status == 1
    assert re.search(rf'^ *{OBJECTS} +copied', out, re.M)
    assert out.endswith(
        f'Stopped: the listing of {source["ASGI_LOOK_STORAGE_PATH"]} (thumbnails/) '
        'failed: The disk is gone.. Run the same command again to go on.\n'
    )


@pytest.mark.parametrize('chunk', [migrate.CHUNK, 0])
@pytest.mark.parametrize('key', [None, KEY_A])
def test_a_damaged_copy_is_copied_again(
    capsys, tmp_path, source, monkeypatch, key, chunk
):
    # NOTE: chunk 0: every copy is read back as a stream.
    monkeypatch.setattr(migrate, 'CHUNK', chunk)
    environ = {**source, 'ASGI_LOOK_ENCRYPTION_KEY': key} if key else source
    target = tmp_path / 'target'
    run(capsys, environ, 'migrate', '--to', target)
    flipped, truncated = sorted(stored_objects(target))[:2]
    data = bytearray((target / flipped).read_bytes())
    data[-20] ^= 1
    (target / flipped).write_bytes(data)
    (target / truncated).write_bytes((target / truncated).read_bytes()[:-20])

    status, document, err = run_json(capsys, environ, 'migrate', '--to', target)

    assert status == 0
    assert document['objects']['copied'] == 2
    assert document['objects']['already_there'] == OBJECTS - 2
    moved = {**environ, 'ASGI_LOOK_STORAGE_URL': str(target)}
    assert asyncio.run(served(moved)) == asyncio.run(served(source))


def test_a_copy_that_does_not_read_back_fails(capsys, tmp_path, source, monkeypatch):
    put = LocalBlobs.put

    async def lossy(self, key, data):
        await put(self, key, data[:-1])

    monkeypatch.setattr(LocalBlobs, 'put', lossy)

    status, document, err = run_json(capsys, source, 'migrate', '--to', tmp_path / 't')

    assert status == 1
    assert document['objects']['failed'] == OBJECTS
    assert document['stopped'] is None
    assert document['failures'][0]['reason'] == (
        f'its copy in {tmp_path / "t"} does not read back as written'
    )


def test_an_object_deleted_meanwhile_is_gone(capsys, tmp_path, source, storage):
    victim = next(
        key for key in stored_objects(storage) if key.startswith('thumbnails/')
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        deleted_when_listed(monkeypatch, victim)
        status, out, err = run(capsys, source, 'migrate', '--to', tmp_path / 'target')

    assert status == 0, out
    assert re.search(rf'^ *{OBJECTS - 1} +copied', out, re.M)
    assert re.search(r'^ *1 +gone +0 bytes$', out, re.M)
    assert victim not in stored_objects(tmp_path / 'target')


def test_a_damaged_source_object_fails(capsys, caplog, tmp_path):
    keyed = settings(tmp_path / 'source', ASGI_LOOK_ENCRYPTION_KEY=KEY_A)
    asyncio.run(upload(keyed))
    damaged = sorted(stored_objects(tmp_path / 'source'))[0]
    path = tmp_path / 'source' / damaged
    path.write_bytes(path.read_bytes()[:-1] + b'!')

    status, document, err = run_json(capsys, keyed, 'migrate', '--to', tmp_path / 't')

    assert status == 1
    assert document['objects']['copied'] == OBJECTS - 1
    [failure] = document['failures']
    assert failure['key'] == damaged
    assert failure['where'] == str(tmp_path / 'source')
    assert failure['reason'].startswith(
        f'cannot read it from {tmp_path / "source"}: stored object {damaged!r} '
        'cannot be read'
    )
    assert f'object {damaged} failed authentication' in caplog.text


def test_ctrl_c_interrupts_a_run_and_the_next_goes_on(
    capsys, tmp_path, source, monkeypatch
):
    put = LocalBlobs.put
    done = []

    async def interrupted(self, key, data):
        await put(self, key, data)
        done.append(key)
        if len(done) == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(LocalBlobs, 'put', interrupted)
    target = tmp_path / 'target'

    status, out, err = run(capsys, source, 'migrate', '--to', target, '--jobs', 1)

    assert status == 130
    assert out.endswith('Interrupted: run the same command again to go on.\n')
    monkeypatch.undo()
    status, document, err = run_json(capsys, source, 'migrate', '--to', target)
    assert status == 0
    assert document['objects']['already_there'] >= 2
    assert document['objects']['copied'] + document['objects']['already_there'] == (
        OBJECTS
    )


def test_the_progress_bar_is_shown_on_a_terminal(capsys, tmp_path, source, monkeypatch):
    terminal = functools.partial(rich.console.Console, force_terminal=True)
    monkeypatch.setattr(objects_output, 'Console', terminal)

    status, out, err = run(capsys, source, 'migrate', '--to', tmp_path / 'target')

    assert status == 0
    assert 'Copying' in err
    assert f'{OBJECTS} copied' in err


def test_not_on_a_terminal_there_is_no_progress_bar(capsys, tmp_path, source):
    status, out, err = run(capsys, source, 'migrate', '--to', tmp_path / 'target')
    assert status == 0
    assert err == ''


@pytest.mark.parametrize(
    'more, args, message',
    [
        ({}, ['--storage', 'nowhere'], 'there is no storage directory nowhere'),
        ({}, ['--to', 'ftp://host/x'], "Unsupported storage URL scheme 'ftp://'"),
        ({}, ['--to', ''], 'The storage URL is empty'),
        ({}, ['--renditions-to', 's3://'], 'it names a bucket'),
        (
            {'ASGI_LOOK_ENCRYPTION_KEY': 'c2hvcnQ='},
            [],
            'ASGI_LOOK_ENCRYPTION_KEY must be the base64 of 32 random bytes',
        ),
        ({'ASGI_LOOK_STORAGE_URL': 'ftp://x'}, [], 'Unsupported storage URL scheme'),
        (
            {'ASGI_LOOK_RENDITIONS_URL': '/nowhere'},
            [],
            'there is no directory /nowhere',
        ),
        ({}, ['--to', '{storage}'], 'the objects are in {storage} already'),
        (
            {},
            ['--to', '{storage}/images/copy'],
            '{storage}/images/copy is inside {storage}: what is copied there',
        ),
        ({}, ['--to', '{storage}/index.sqlite3/x'], 'cannot be written'),
    ],
)
def test_what_cannot_start_exits_2(
    capsys, tmp_path, source, storage, more, args, message
):
    args = [arg.format(storage=storage) for arg in args]
    if '--to' not in args:
        args += ['--to', tmp_path / 'target']
    if '--storage' not in args:
        args += ['--storage', storage]

    status, out, err = run(capsys, {**source, **more}, 'migrate', *args)

    assert status == 2
    assert out == ''
    assert err.startswith('asgilook migrate: cannot start: ')
    assert message.format(storage=storage) in err
    assert not (tmp_path / 'target').exists()


def test_the_storage_directory_of_serve_is_the_default(capsys, tmp_path):
    data = tmp_path / 'data'
    environ = {'XDG_DATA_HOME': str(data)}
    asyncio.run(upload(settings(data / 'asgilook')))

    status, document, err = run_json(capsys, environ, 'migrate', '--to', tmp_path / 't')

    assert document['from']['originals'] == str(data / 'asgilook')
    assert document['objects']['copied'] == OBJECTS


# Between a directory and a bucket


@pytest.mark.s3
@pytest.mark.parametrize('key', [None, KEY_A])
def test_local_to_s3(capsys, source, seaweed_server, bucket, key):
    environ = {**source, **seaweed_server.environ}
    if key:
        environ['ASGI_LOOK_ENCRYPTION_KEY'] = key

    status, out, err = run(capsys, environ, 'migrate', '--to', bucket)

    assert status == 0, out + err
    assert re.search(rf'^ *{OBJECTS} +copied', out, re.M)
    moved = {**environ, 'ASGI_LOOK_STORAGE_URL': bucket}
    assert asyncio.run(served(moved)) == asyncio.run(served(source))
    stored = asyncio.run(stored_in(bucket, seaweed_server.environ))
    assert len(stored) == OBJECTS
    assert all(is_sealed(data) == bool(key) for data in stored.values())

    status, document, err = run_json(capsys, environ, 'migrate', '--to', bucket)
    assert document['objects']['already_there'] == OBJECTS


async def stored_in(url, environ):
    """The stored bytes of every object at ``url``, by key."""
    blobs = open_blobs(url, environ)
    found = {}
    for prefix in ('images/', 'thumbnails/'):
        async for listed in blobs.list(prefix):
            found[listed.key] = (await blobs.open(listed.key, WHOLE)).body
    await blobs.close()
    return found


@pytest.mark.s3
def test_s3_back_to_the_storage_directory(capsys, tmp_path, seaweed_server, bucket):
    storage = tmp_path / 'storage'
    on_s3 = settings(storage, ASGI_LOOK_STORAGE_URL=bucket, **seaweed_server.environ)
    asyncio.run(upload(on_s3))
    assert stored_objects(storage) == {}

    status, out, err = run(capsys, on_s3, 'migrate', '--to', storage)

    assert status == 0, out + err
    assert out.startswith(f'From {bucket} to {storage}:')
    assert len(stored_objects(storage)) == OBJECTS
    assert asyncio.run(served(settings(storage))) == asyncio.run(served(on_s3))


@pytest.mark.s3
def test_a_bucket_that_cannot_be_used(capsys, tmp_path, source, seaweed_server, bucket):
    refused = {**source, **seaweed_server.environ, 'AWS_SECRET_ACCESS_KEY': 'wrong'}

    status, out, err = run(capsys, refused, 'migrate', '--to', bucket)
    assert status == 2
    assert f'{bucket} cannot be written: ' in err
    assert 'the secret key was refused' in err

    # NOTE: Never made: SeaweedFS makes a bucket that an object is put in.
    nowhere = f's3://missing-{uuid.uuid4().hex}'
    environ = {**source, **seaweed_server.environ, 'ASGI_LOOK_STORAGE_URL': nowhere}
    status, out, err = run(capsys, environ, 'migrate', '--to', tmp_path / 'target')
    assert status == 2
    assert f'{nowhere} cannot be listed: ' in err
    assert 'there is no such bucket' in err


# asgilook rekey


def sealed_files(root):
    return {key: is_sealed(data) for key, data in stored_objects(root).items()}


def test_rekey_seals_plain_objects(capsys, source, storage):
    keyed = {**source, 'ASGI_LOOK_ENCRYPTION_KEY': KEY_A}
    before = asyncio.run(served(source))

    status, out, err = run(capsys, keyed, 'rekey')

    assert status == 0, out
    assert out.startswith(f'The objects of {storage}, under the current key (id ')
    assert re.search(rf'^ *{OBJECTS} +sealed', out, re.M)
    assert out.endswith(
        'Every object is under the current key: the old keys may now be removed '
        'from ASGI_LOOK_ENCRYPTION_OLD_KEYS.\n'
    )
    assert all(sealed_files(storage).values())
    assert asyncio.run(served(keyed)) == before

    status, document, err = run_json(capsys, keyed, 'rekey')
    assert document['objects']['current'] == OBJECTS
    assert document['objects']['sealed'] == 0


def test_rekey_after_a_key_rotation(capsys, tmp_path):
    storage = tmp_path / 'storage'
    under_a = settings(storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_A)
    asyncio.run(upload(under_a))
    before = asyncio.run(served(under_a))
    rotated = settings(
        storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_B, ASGI_LOOK_ENCRYPTION_OLD_KEYS=KEY_A
    )

    status, document, err = run_json(capsys, rotated, 'rekey')

    assert status == 0
    assert document['objects']['rewrapped'] == OBJECTS
    assert document['storage'] == [str(storage)]
    assert document['reencrypt'] is False
    only_b = settings(storage, ASGI_LOOK_ENCRYPTION_KEY=KEY_B)
    assert asyncio.run(served(only_b)) == before
    with pytest.raises(DamagedObject):
        asyncio.run(served(under_a))

    status, document, err = run_json(capsys, only_b, 'rekey')
    assert document['objects']['current'] == OBJECTS
    assert document['key_id'] == document['key_id'].lower()


def test_rekey_reencrypts(capsys, tmp_path):
    keyed = settings(tmp_path / 'storage', ASGI_LOOK_ENCRYPTION_KEY=KEY_A)
    asyncio.run(upload(keyed))
    before, stored = asyncio.run(served(keyed)), stored_objects(tmp_path / 'storage')

    status, document, err = run_json(capsys, keyed, 'rekey', '--reencrypt')

    assert document['objects']['reencrypted'] == OBJECTS
    assert document['reencrypt'] is True
    after = stored_objects(tmp_path / 'storage')
    # NOTE: A new salt and data key: the headers differ from byte 21 on.
    assert all(after[key][21:37] != stored[key][21:37] for key in stored)
    assert asyncio.run(served(keyed)) == before


def test_rekey_walks_the_renditions_kept_apart(capsys, tmp_path):
    apart = settings(
        tmp_path / 'storage',
        ASGI_LOOK_RENDITIONS_URL=str(tmp_path / 'renditions'),
        ASGI_LOOK_ENCRYPTION_KEY=KEY_A,
    )
    asyncio.run(upload(apart))
    rotated = {**apart, 'ASGI_LOOK_ENCRYPTION_KEY': KEY_B}
    rotated['ASGI_LOOK_ENCRYPTION_OLD_KEYS'] = KEY_A

    status, out, err = run(capsys, rotated, 'rekey', '--jobs', 2)

    assert status == 0, out
    assert f'{tmp_path / "storage"} and {tmp_path / "renditions"}' in out
    assert re.search(rf'^ *{OBJECTS} +rewrapped', out, re.M)


def test_rekey_counts_a_damaged_object_as_failed(capsys, tmp_path):
    keyed = settings(tmp_path / 'storage', ASGI_LOOK_ENCRYPTION_KEY=KEY_A)
    asyncio.run(upload(keyed))
    damaged = sorted(stored_objects(tmp_path / 'storage'))[-1]
    path = tmp_path / 'storage' / damaged
    data = bytearray(path.read_bytes())
    data[50] ^= 1
    path.write_bytes(data)

    status, out, err = run(capsys, keyed, 'rekey')

    assert status == 1
    assert re.search(r'^ *1 +failed', out, re.M)
    assert re.search(rf'{re.escape(damaged)} +│ .* +│ stored object', out)
    assert out.endswith(
        '1 object failed: keep the keys of ASGI_LOOK_ENCRYPTION_OLD_KEYS until they '
        'are resealed.\n'
    )


def test_rekey_counts_an_object_deleted_meanwhile_as_missing(
    capsys, source, storage, monkeypatch
):
    victim = sorted(stored_objects(storage))[-1]
    deleted_when_listed(monkeypatch, victim)
    keyed = {**source, 'ASGI_LOOK_ENCRYPTION_KEY': KEY_A}

    status, document, err = run_json(capsys, keyed, 'rekey')

    assert status == 0
    assert document['objects']['missing'] == 1
    assert document['objects']['sealed'] == OBJECTS - 1


@pytest.mark.parametrize(
    'more, message',
    [
        ({}, 'ASGI_LOOK_ENCRYPTION_KEY is not set: there is no key to seal'),
        (
            {'ASGI_LOOK_ENCRYPTION_KEY': KEY_A, 'ASGI_LOOK_RENDITIONS_URL': '/nowhere'},
            'there is no directory /nowhere',
        ),
        ({'ASGI_LOOK_ENCRYPTION_OLD_KEYS': 'nope'}, 'ASGI_LOOK_ENCRYPTION_OLD_KEYS'),
    ],
)
def test_rekey_that_cannot_start_exits_2(capsys, source, more, message):
    status, out, err = run(capsys, {**source, **more}, 'rekey')

    assert status == 2
    assert out == ''
    assert err.startswith('asgilook rekey: cannot start: ')
    assert message in err


# Arguments and help


@pytest.mark.parametrize(
    'args, message',
    [
        (['migrate'], 'the following arguments are required: --to'),
        (['migrate', '--to', 'x', '--jobs', '0'], "'0' is not a whole number above 0"),
        (['rekey', '--jobs', 'many'], "'many' is not a whole number above 0"),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(args, {})
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    'command, sayings',
    [
        (
            'migrate',
            [
                'asgilook migrate --to s3://pictures --renditions-to',
                'a second run copies nothing',
                'run the same\ncommand again, with the old settings, to copy them',
                '1    some objects could not be copied',
            ],
        ),
        (
            'rekey',
            [
                'asgilook rekey --reencrypt',
                'the old keys may be removed from\nASGI_LOOK_ENCRYPTION_OLD_KEYS',
                '2    usage error, or it cannot start: ASGI_LOOK_ENCRYPTION_KEY',
            ],
        ),
    ],
)
def test_help_has_examples_and_exit_statuses(capsys, command, sayings):
    with pytest.raises(SystemExit) as exit:
        cli.main([command, '--help'], {})
    assert exit.value.code == 0
    help = capsys.readouterr().out
    assert 'examples:' in help
    assert 'exit status:' in help
    for saying in sayings:
        assert saying in help


def test_the_commands_are_listed(capsys):
    with pytest.raises(SystemExit):
        cli.main(['--help'], {})
    help = capsys.readouterr().out
    assert 'migrate' in help
    assert 'rekey' in help
    assert 'asgilook migrate --to s3://BUCKET' in help


@pytest.mark.parametrize(
    'args, module, expected',
    [
        (
            ['migrate', '--to', 's3://b/p', '--renditions-to', 'r', '--jobs', '8'],
            'migrate',
            {
                'positional': ('s3://b/p',),
                'storage': pathlib.Path('here'),
                'renditions_to': 'r',
                'jobs': 8,
                'as_json': False,
            },
        ),
        (
            ['rekey', '--reencrypt', '--json', '--storage', 'there'],
            'rekey',
            {
                'positional': (),
                'storage': pathlib.Path('there'),
                'reencrypt': True,
                'as_json': True,
            },
        ),
        (
            ['check', '--grace', '60', '--repair'],
            'check',
            {
                'positional': (pathlib.Path('here'),),
                'grace': 60,
                'repair': True,
                'as_json': False,
            },
        ),
    ],
)
def test_each_command_is_given_its_options(monkeypatch, args, module, expected):
    called = {}

    def run(*positional, **options):
        called.update(options, positional=positional)
        return 7

    command = importlib.import_module(f'asgilook.commands.{module}')
    monkeypatch.setattr(command, 'run', run)
    environ = {'ASGI_LOOK_STORAGE_PATH': 'here'}

    assert cli.main(args, environ) == 7
    assert called['environ'] is environ
    assert expected.items() <= called.items()


def test_a_grace_that_is_not_seconds_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(['check', '--grace', 'soon'], {})
    assert exit.value.code == 2
    assert "'soon' is not a whole number of seconds" in capsys.readouterr().err

import asyncio
import errno
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import sqlite3

import falcon.testing
import PIL.Image
import pytest

from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import Unsure
from asgilook.http.app import create_app
from asgilook.pictures import pixels
from asgilook.storage.blobs import local as local_blobs
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Image
from asgilook.storage.store import Store
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image


@pytest.fixture
def store(config, tmp_path):
    config.storage_path = tmp_path
    return Store(config)


def files_in(path):
    return sorted(os.listdir(path))


async def read_whole(store, image_id, size=None):
    """The image and the bytes of its original (or thumbnail), read whole."""
    image = await store.get(image_id)
    image, content = await store.read(image, size, whole_up_to=2**40)
    return image, content.body


def test_images_survive_a_new_store_on_the_same_directory(config, store, tmp_path):
    async def fill():
        for image_id in ('a', 'b', 'c'):
            await store.save(image_id, draw_image((128, 128)))
        await store.save('a', draw_image((256, 128)))
        return await store.list_images()

    before = asyncio.run(fill())
    after = asyncio.run(Store(config).list_images())
    assert [image.serialize() for image in after] == [
        image.serialize() for image in before
    ]
    assert [image.image_id for image in after] == ['b', 'c', 'a']
    assert after[-1].size == (256, 128)
    # The replaced version's files are gone; one version per image remains,
    # its JPEG and the PNG kept as uploaded.
    assert len(files_in(tmp_path / 'images')) == 6
    assert {name.rpartition('.')[2] for name in files_in(tmp_path / 'images')} == {
        'jpeg',
        'original',
    }


def test_modified_follows_the_upload_order(store):
    async def fill():
        for number in range(20):
            await store.save(f'id-{number}', draw_image((64, 64)))
        return await store.list_images()

    stamps = [image.modified for image in asyncio.run(fill())]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


@pytest.mark.parametrize(
    ('code', 'error'),
    [
        (errno.ENOSPC, StorageFull),
        (errno.EDQUOT, StorageFull),
        (errno.EROFS, StorageUnavailable),
        (errno.EACCES, StorageUnavailable),
    ],
)
def test_a_failed_write_is_a_storage_error_and_leaves_nothing(
    store, tmp_path, monkeypatch, code, error
):
    def fail(path):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(local_blobs, '_fsync_directory', fail)
    with pytest.raises(error):
        asyncio.run(store.save('doomed', draw_image()))

    assert files_in(tmp_path / 'images') == []
    assert files_in(tmp_path / 'thumbnails') == []
    assert asyncio.run(store.list_images()) == []


def test_an_unreadable_file_is_a_storage_error(store, monkeypatch):
    asyncio.run(store.save('locked', draw_image((128, 128))))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied')

    monkeypatch.setattr(local_blobs, '_open', refuse)
    with pytest.raises(StorageUnavailable, match='Permission denied'):
        asyncio.run(read_whole(store, 'locked'))


def test_a_replacement_between_lookup_and_read_is_followed(config, store):
    asyncio.run(store.save('moving', draw_image((128, 128))))
    other_worker = Store(config)

    async def look_up_then_read():
        image = await store.get('moving')
        await other_worker.save('moving', draw_image((256, 256)))
        return image, await store.read(image, None, whole_up_to=2**40)

    looked_up, (image, content) = asyncio.run(look_up_then_read())
    assert looked_up.size == (128, 128)
    assert image.size == (256, 256)
    with PIL.Image.open(io.BytesIO(content.body)) as decoded:
        assert decoded.size == (256, 256)


def test_a_listed_image_whose_file_vanished_is_not_found(store, tmp_path):
    image, _ = asyncio.run(store.save('vanishing', draw_image((128, 128))))
    os.unlink(image.path)
    with pytest.raises(ImageNotFound, match='file of image vanishing is missing'):
        asyncio.run(read_whole(store, 'vanishing'))


def test_pool_serves_many_operations_and_restarts_after_shutdown(store):
    async def lifespan(ids):
        for image_id in ids:
            await store.save(image_id, draw_image((256, 128)))
        thumbs = [await read_whole(store, image_id, (128, 64)) for image_id in ids]
        await store.process_shutdown(None, None)
        return thumbs

    assert len(asyncio.run(lifespan(['a', 'b']))) == 2
    assert len(asyncio.run(lifespan(['c']))) == 1
    assert [image.image_id for image in asyncio.run(store.list_images())] == [
        'a', 'b', 'c'
    ]  # fmt: skip


def test_an_image_made_by_hand_lives_in_the_images_directory(config, tmp_path):
    config.storage_path = tmp_path
    image = Image(config, 'by-hand', (640, 360))
    assert image.path == tmp_path / 'images' / 'by-hand.jpeg'
    assert image.serialize()['thumbnails'] == [
        '/thumbnails/by-hand/320x180.jpeg',
        '/thumbnails/by-hand/160x90.jpeg',
    ]


def test_running_out_of_memory_is_not_blamed_on_the_upload(monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(PIL.Image, 'open', exhausted)
    with pytest.raises(MemoryError):
        pixels.convert(b'any bytes', 50_000_000)


def test_an_index_that_cannot_be_written_leaves_no_file(store, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        error = sqlite3.OperationalError('database or disk is full')
        error.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise error

    monkeypatch.setattr(SQLiteIndex, '_put_all', full)
    with pytest.raises(StorageFull):
        asyncio.run(store.save('unrecorded', draw_image((128, 128))))
    assert files_in(tmp_path / 'images') == []
    assert files_in(tmp_path / 'thumbnails') == []


def test_delete_without_a_cache_hook(store, tmp_path):
    image, token = asyncio.run(store.save('plain', draw_image((128, 128))))
    asyncio.run(store.delete('plain', token))
    assert asyncio.run(store.list_images()) == []
    assert files_in(tmp_path / 'images') == []
    assert files_in(tmp_path / 'thumbnails') == []


def test_a_file_that_cannot_be_synced_leaves_nothing(store, tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, 'fsync', broken)
    with pytest.raises(StorageUnavailable, match='Input/output error'):
        asyncio.run(store.save('unsynced', draw_image((256, 256))))
    monkeypatch.undo()
    assert files_in(tmp_path / 'images') == []
    assert files_in(tmp_path / 'thumbnails') == []
    assert asyncio.run(store.list_images()) == []


def test_the_journal_of_an_earlier_release_is_adopted_losing_nothing(config, caplog):
    # A storage directory as the journal-based release left it: two images
    # (one replaced, one deleted on the way), a damaged line, a torn one.
    a, b, c = FIRST_IDS
    root = pathlib.Path(config.storage_path)
    (root / 'images').mkdir()
    pictures = {
        b: draw_image((400, 256), format='JPEG'),
        a: draw_image((256, 512), format='JPEG'),
    }
    for image_id, data in pictures.items():
        (root / 'images' / f'{image_id}.v2.jpeg').write_bytes(data)

    def put(image_id, size, modified, version='v2'):
        token = hashlib.sha256(f'token of {image_id}'.encode()).hexdigest()
        return json.dumps(
            {'op': 'put', 'id': image_id, 'file': f'{image_id}.{version}.jpeg',
             'size': size, 'modified': modified, 'token': token}
        )  # fmt: skip

    lines = [
        '{"op":"journal","id":"0b2f"}',
        put(a, [9, 9], 1_700_000_000_000_000, 'v1'),
        put(b, [400, 256], 1_700_000_000_000_001),
        put(c, [9, 9], 1_700_000_000_000_002, 'v1'),
        'not json',
        json.dumps({'op': 'move', 'id': a}),
        json.dumps({'op': 'del', 'id': c}),
        put(a, [256, 512], 1_700_000_000_000_003),
    ]
    journal = '\n'.join(lines) + '\n{"op":"put","id":"torn'
    (root / 'journal.jsonl').write_text(journal)

    client = falcon.testing.TestClient(create_app(config))
    with caplog.at_level(logging.WARNING, logger='asgilook.storage.index.journal'):
        listing = client.simulate_get('/images').json
    assert 'unreadable journal line' in caplog.text
    assert [document['id'] for document in listing] == [b, a]
    assert [document['size'] for document in listing] == [[400, 256], [256, 512]]
    assert listing[1]['modified'] == 'Tue, 14 Nov 2023 22:13:20 GMT'
    for document in listing:
        original = client.simulate_get(document['image'])
        assert original.content == pictures[document['id']]
        smallest = document['thumbnails'][-1]
        width, height = re.search(r'(\d+)x(\d+)\.jpeg$', smallest).groups()
        thumbnail = decode(client.simulate_get(smallest).content)
        assert thumbnail.size == (int(width), int(height))
    assert not (root / 'journal.jsonl').exists()
    assert (root / 'journal.jsonl.adopted').read_text() == journal

    # The tokens still work; what was deleted since stays deleted, even if
    # the journal comes back.
    resp = client.simulate_delete(
        f'/images/{b}.jpeg', headers={'Authorization': f'Bearer token of {b}'}
    )
    assert resp.status_code == 204
    (root / 'journal.jsonl').write_text(journal)
    again = falcon.testing.TestClient(create_app(config))
    assert [document['id'] for document in again.simulate_get('/images').json] == [a]


def test_a_store_not_yet_opened_is_unsure_of_every_version(store):
    # Until its first use has adopted any old journal, nothing is known.
    for subject in (None, 'any'):
        with pytest.raises(Unsure):
            store.current(subject)


def test_a_new_store_that_wrote_nothing_knows_the_listing_after_its_first(config):
    # A restarted process, or a worker that never uploads: its first listing
    # is all it needs to tell the index's state at once, and what another
    # process changes is still seen.
    async def scenario():
        writer = Store(config)
        _, token = await writer.save('a', draw_image((128, 128)))
        reader = Store(config)
        with pytest.raises(Unsure):
            reader.current(None)
        _, state = await reader.page()
        assert reader.current(None) == state
        assert reader.current(None) == state  # and costs no read to repeat
        await writer.save('b', draw_image((128, 128)))
        assert reader.current(None) != state
        images, state = await reader.page()
        assert [image.image_id for image in images] == ['a', 'b']
        assert reader.current(None) == state
        await writer.delete('a', token)
        assert reader.current(None) != state

    asyncio.run(scenario())

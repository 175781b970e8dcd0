"""Where a store keeps its objects: originals and renditions, apart or together."""

import asyncio
import base64
import os
import types

import pytest

from asgilook.config import Config
from asgilook.errors import DamagedObject
from asgilook.errors import StorageUnavailable
from asgilook.storage import objects
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.crypto import HEADER_SIZE
from asgilook.storage.index import journal
from asgilook.storage.objects import Objects
from asgilook.storage.store import Store
from tests.helpers import draw_image

KEY = base64.b64encode(b'k' * 32).decode()
OLD = base64.b64encode(b'o' * 32).decode()


def settings(tmp_path, **environ):
    return Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(tmp_path), **environ})


def files_under(path):
    return sorted(
        os.path.relpath(os.path.join(folder, name), path)
        for folder, _, names in os.walk(path)
        for name in names
    )


def test_the_keys_are_the_tutorial_layout():
    file = 'a.1f2e.jpeg'
    assert objects.original_key(file) == 'images/a.1f2e.jpeg'
    assert objects.animation_key(file) == 'images/a.1f2e.webp'
    assert objects.thumbnails_prefix(file) == 'thumbnails/a.1f2e/'
    assert objects.thumbnail_key(file, (64, 36)) == 'thumbnails/a.1f2e/64x36.jpeg'
    assert objects.thumbnail_key(file, (64, 36), 'avif') == (
        'thumbnails/a.1f2e/64x36.avif'
    )


def test_by_default_everything_is_in_the_storage_directory(tmp_path):
    kept = Objects.of(settings(tmp_path))
    assert not kept.apart
    assert isinstance(kept.originals.inner, LocalBlobs)
    assert kept.originals.inner.root == tmp_path
    assert kept.originals.keyring is None


def test_renditions_kept_apart_from_the_originals(tmp_path):
    config = settings(
        tmp_path / 'index',
        ASGI_LOOK_STORAGE_URL=str(tmp_path / 'originals'),
        ASGI_LOOK_RENDITIONS_URL=str(tmp_path / 'fast'),
    )
    store = Store(config)
    assert store.objects.apart

    async def scenario():
        image, _ = await store.save('apart', draw_image((256, 128)))
        seen = await store.check()
        _, thumbnail = await store.read(image, (128, 64), 2**20)
        await store.process_shutdown(None, None)
        return image, seen, thumbnail

    image, (ok, detail), thumbnail = asyncio.run(scenario())
    assert ok and detail.count('writable') == 2 and 'renditions' in detail
    version = image.file.removesuffix('.jpeg')
    # The JPEG, and the PNG kept as uploaded.
    assert files_under(tmp_path / 'originals') == [
        f'images/{image.file}',
        f'images/{version}.original',
    ]
    assert files_under(tmp_path / 'fast') == [f'thumbnails/{version}/128x64.jpeg']
    assert thumbnail.size == len(thumbnail.body) > 0
    # The storage directory keeps what is local by nature: the index.
    local = files_under(tmp_path / 'index')
    assert local and all(name.startswith('index.sqlite3') for name in local)


def test_the_keys_configured_seal_what_is_written(tmp_path):
    config = settings(
        tmp_path,
        ASGI_LOOK_ENCRYPTION_KEY=KEY,
        ASGI_LOOK_ENCRYPTION_OLD_KEYS=OLD,
    )
    kept = Objects.of(config)
    assert kept.originals.encrypts

    async def scenario():
        await kept.write_original('x.1.jpeg', b'the picture')
        return await kept.read_original('x.1.jpeg')

    assert asyncio.run(scenario()) == b'the picture'
    stored = (tmp_path / 'images' / 'x.1.jpeg').read_bytes()
    assert b'the picture' not in stored


def test_a_journal_that_cannot_be_read_is_a_storage_error(tmp_path):
    (tmp_path / journal.FILE).mkdir()
    store = Store(settings(tmp_path))
    with pytest.raises(StorageUnavailable, match='Is a directory'):
        asyncio.run(store.count())


def test_a_part_of_a_sealed_object_reads_its_header_once(tmp_path):
    kept = Objects.of(settings(tmp_path, ASGI_LOOK_ENCRYPTION_KEY=KEY))
    data = bytes(range(256)) * 1024
    reads = []
    inner = kept.originals.inner
    real_open = inner.open

    async def counted(key, whole_up_to, start=0, end=None):
        reads.append((start, end))
        return await real_open(key, whole_up_to, start, end)

    inner.open = counted

    async def scenario():
        await kept.write_original('x.1.jpeg', data)
        part = await kept.original('x.1.jpeg', 2**20, lambda size: (1000, 2000))
        missing = await kept.original('y.1.jpeg', 2**20, lambda size: (0, 1))
        past = await kept.original('x.1.jpeg', 2**20, lambda size: None)
        return part, missing, past

    part, missing, past = asyncio.run(scenario())
    assert (part.size, part.start, part.end) == (len(data), 1000, 2000)
    assert part.body == data[1000:2000] and part.partial
    assert missing is None
    assert not past.satisfiable and past.body == b'' and past.partial
    # The header, then the span of the part; the missing one; the header alone.
    assert len(reads) == 4


def test_a_part_of_an_object_that_fails_or_goes_is_refused_or_missing(tmp_path):
    sealing = Objects.of(settings(tmp_path, ASGI_LOOK_ENCRYPTION_KEY=KEY))
    keyless = Objects.of(settings(tmp_path))

    def whole(size):
        return 0, size

    async def scenario():
        await sealing.write_original('x.1.jpeg', b'secret' * 100)
        with pytest.raises(DamagedObject, match='images/x.1.jpeg'):
            await keyless.original('x.1.jpeg', 2**20, whole)
        inner = sealing.originals.inner
        real_open = inner.open

        async def gone_after_the_header(key, whole_up_to, start=0, end=None):
            found = await real_open(key, whole_up_to, start, end)
            if end == HEADER_SIZE:
                await inner.delete([key])
            return found

        inner.open = gone_after_the_header
        return await sealing.original('x.1.jpeg', 2**20, whole)

    assert asyncio.run(scenario()) is None


def test_a_bucket_gets_no_local_directories(tmp_path):
    # A backend with no directory of its own, as S3.
    bucket = SealedBlobs(types.SimpleNamespace(url='s3://pictures'), None)
    local = SealedBlobs(LocalBlobs(tmp_path), None)
    Objects(bucket, local).make()
    assert [path.name for path in tmp_path.iterdir()] == ['thumbnails']

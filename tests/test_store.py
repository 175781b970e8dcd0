import asyncio
import os

import PIL.Image
import pytest

from asgilook import pixels
from asgilook.store import Store
from tests.conftest import draw_image


def test_failed_write_leaves_no_partial_file(config, tmp_path):
    config.storage_path = tmp_path
    store = Store(config)
    # A directory where the JPEG should go makes the final rename fail.
    (tmp_path / 'blocked.jpeg').mkdir()

    with pytest.raises(IsADirectoryError):
        asyncio.run(store.save('blocked', draw_image()))

    assert os.listdir(tmp_path) == ['blocked.jpeg']
    assert asyncio.run(store.list_images()) == []


def test_pool_serves_many_operations_and_restarts_after_shutdown(config, tmp_path):
    config.storage_path = tmp_path
    store = Store(config)

    async def lifespan(ids):
        saved = [await store.save(image_id, draw_image((256, 128))) for image_id in ids]
        thumbs = [await store.make_thumbnail(image, (128, 64)) for image in saved]
        await store.process_shutdown(None, None)
        return thumbs

    assert len(asyncio.run(lifespan(['a', 'b']))) == 2
    assert len(asyncio.run(lifespan(['c']))) == 1
    assert [image.image_id for image in asyncio.run(store.list_images())] == [
        'a', 'b', 'c'
    ]  # fmt: skip


def test_running_out_of_memory_is_not_blamed_on_the_upload(monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(PIL.Image, 'open', exhausted)
    with pytest.raises(MemoryError):
        pixels.convert(b'any bytes', 50_000_000)

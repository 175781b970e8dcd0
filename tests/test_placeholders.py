"""What each picture carries besides its files: a placeholder, an animation."""

import asyncio
import base64
import io
import os
import random
import sqlite3

import PIL.Image
import pytest

from asgilook.errors import StorageUnavailable
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.store import Store
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image


def placeholder_image(document):
    prefix = 'data:image/webp;base64,'
    assert document['placeholder'].startswith(prefix)
    data = base64.b64decode(document['placeholder'].removeprefix(prefix))
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return data, image


def mean(image):
    return (
        image.convert('RGB').resize((1, 1), PIL.Image.Resampling.BOX).getpixel((0, 0))
    )


@pytest.mark.parametrize('size', [(1600, 900), (640, 360), (100, 60), (10, 40)])
def test_every_picture_gets_a_placeholder_of_its_shape_and_colour(client, size):
    # NOTE: One picture per size, the same every run. Drawn at random, about
    #   one picture in fifty of 10x40 (mostly yellow over blue, shrunk to a
    #   6x24 WebP that keeps a quarter of its colour samples) came back more
    #   than 24 off in a channel.
    body = draw_image(size, background='#2060c0', rng=random.Random(str(size)))
    document = client.simulate_post('/images', body=body).json
    data, image = placeholder_image(document)

    assert len(data) <= 800  # a few hundred bytes
    assert image.format == 'WEBP'
    assert max(image.size) <= 24
    # The same shape, within a pixel of rounding.
    width, height = size
    assert abs(image.size[0] / image.size[1] - width / height) < 0.5 * width / height
    # Of the picture's colours: the same mean colour, near enough.
    seen = mean(image)
    expected = mean(PIL.Image.open(io.BytesIO(body)))
    assert all(abs(a - b) <= 24 for a, b in zip(seen, expected, strict=True))
    listed = client.simulate_get('/images').json
    assert [item['placeholder'] for item in listed] == [document['placeholder']]


def gif(colours, size=(48, 32), durations=None):
    frames = [PIL.Image.new('RGB', size, colour) for colour in colours]
    output = io.BytesIO()
    frames[0].save(
        output,
        'GIF',
        save_all=True,
        append_images=frames[1:],
        duration=durations or [100] * len(frames),
        loop=0,
    )
    return output.getvalue()


def test_an_animated_gif_keeps_its_animation_beside_its_picture(client, config):
    resp = client.simulate_post('/images', body=gif(['red', 'lime', 'blue']))
    document = resp.json
    uri = f'/images/{FIRST_IDS[0]}.webp'
    assert document['animation'] == uri

    animation = client.simulate_get(uri)
    assert animation.headers['Content-Type'] == 'image/webp'
    assert animation.headers['ETag'] == f'"{document["version"]}-animation"'
    image = PIL.Image.open(io.BytesIO(animation.content))
    assert (image.format, image.n_frames, image.size) == ('WEBP', 3, (48, 32))
    # The picture itself is the first frame, a JPEG.
    still = PIL.Image.open(io.BytesIO(client.simulate_get(document['image']).content))
    assert still.format == 'JPEG'
    red, green, blue = still.convert('RGB').getpixel((24, 16))
    assert red > 200 and green < 60 and blue < 60

    etag = animation.headers['ETag']
    assert client.simulate_get(uri, headers={'If-None-Match': etag}).status_code == 304
    head = client.simulate_head(uri)
    assert head.headers['Content-Length'] == str(len(animation.content))
    versioned = client.simulate_get(f'{uri}?v={document["version"]}')
    assert versioned.headers['Cache-Control'].endswith('immutable')
    assert client.simulate_get(uri).headers['X-ASGILook-Cache'] == 'Hit'

    # Deleted with its picture.
    token = document['delete_token']
    resp = client.simulate_delete(
        document['image'], headers={'Authorization': f'Bearer {token}'}
    )
    assert resp.status_code == 204
    assert client.simulate_get(uri).status_code == 404
    assert os.listdir(config.storage_path / 'images') == []


def test_a_still_picture_has_no_animation(client):
    document = client.simulate_post('/images', body=draw_image()).json
    assert document['animation'] is None
    resp = client.simulate_get(f'/images/{FIRST_IDS[0]}.webp')
    assert resp.status_code == 404
    assert 'has no animation' in resp.json['description']


def test_a_still_gif_has_no_animation(client):
    assert client.simulate_post('/images', body=gif(['red'])).json['animation'] is None


# When the index's answer to a change is not known.


@pytest.fixture
def store(config, tmp_path):
    config.storage_path = tmp_path
    return Store(config)


def test_a_change_whose_commit_was_not_confirmed_keeps_its_files(
    store, tmp_path, monkeypatch
):
    def lost(*args, **kwargs):
        error = sqlite3.OperationalError('disk I/O error')
        error.sqlite_errorcode = sqlite3.SQLITE_IOERR
        raise error

    monkeypatch.setattr(SQLiteIndex, '_put_all', lost)
    with pytest.raises(StorageUnavailable):
        asyncio.run(store.save('unknown', draw_image((256, 256))))
    # It may have committed: its files stay (unlisted at worst), the JPEG
    # and the PNG kept as uploaded.
    assert len(os.listdir(tmp_path / 'images')) == 2
    assert len(os.listdir(tmp_path / 'thumbnails')) == 1


def test_an_upload_cancelled_while_it_commits_is_stored_whole(store, monkeypatch):
    put = SQLiteIndex.put
    committing = asyncio.Event()

    async def slow_put(self, *args, **kwargs):
        committing.set()
        await asyncio.sleep(0.2)
        return await put(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteIndex, 'put', slow_put)

    async def scenario():
        upload = asyncio.create_task(store.save('cancelled', draw_image((256, 256))))
        await committing.wait()
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        await asyncio.sleep(0.5)
        image = await store.get('cancelled')
        return image, await store.read(image, None, whole_up_to=2**40)

    image, (_, content) = asyncio.run(scenario())
    assert image.path.exists()
    assert PIL.Image.open(io.BytesIO(content.body)).size == (256, 256)

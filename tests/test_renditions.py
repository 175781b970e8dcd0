"""Thumbnails in AVIF, WebP or JPEG, by the request's Accept (or ?format=)."""

import asyncio
import io
import logging

import falcon.testing
import PIL.Image
import pytest

from asgilook.http.app import create_app
from asgilook.pictures import renditions
from asgilook.storage.store import Store
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image

# What current browsers send for an <img>.
CHROMIUM = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8'
FIREFOX = 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5'
SAFARI = (
    'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,'
    'image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5'
)
OLD_FIREFOX = 'image/webp,*/*'

THUMBNAIL = f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg'


@pytest.mark.parametrize(
    ('accept', 'expected'),
    [
        (CHROMIUM, 'avif'),
        (FIREFOX, 'avif'),
        (SAFARI, 'avif'),
        (OLD_FIREFOX, 'webp'),
        ('*/*', 'jpeg'),
        ('image/*', 'jpeg'),
        (None, 'jpeg'),
        ('', 'jpeg'),
        ('image/avif;q=0, image/webp', 'webp'),
        ('image/avif; q=0.0,image/webp;q=0', 'jpeg'),
        ('IMAGE/AVIF', 'avif'),
        ('image/avif;level=1', 'avif'),
        ('image/avif;q=high,image/webp', 'webp'),
    ],
)
def test_negotiation_prefers_avif_then_webp_then_jpeg(accept, expected):
    assert renditions.negotiate(accept) == expected


def serve(config, scenario):
    """Run ``scenario(conductor)`` against one app, its loop running throughout
    (the renders go on in the background)."""

    async def main():
        async with falcon.testing.ASGIConductor(create_app(config)) as conductor:
            resp = await conductor.simulate_post('/images', body=draw_image())
            assert resp.status_code == 201
            return await scenario(conductor)

    return asyncio.run(main())


async def rendered(conductor, accept, uri=THUMBNAIL, timeout=30.0):
    """Ask until the format that ``accept`` takes is the answer."""
    wanted = renditions.MEDIA_TYPES[renditions.negotiate(accept)]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await conductor.simulate_get(uri, headers={'Accept': accept})
        if resp.headers['Content-Type'] == wanted:
            return resp
        assert asyncio.get_running_loop().time() < deadline, 'never rendered'
        await asyncio.sleep(0.02)


def pixels_of(resp):
    image = PIL.Image.open(io.BytesIO(resp.content))
    image.load()
    return image


def test_a_browser_gets_the_jpeg_at_once_and_avif_once_rendered(config):
    async def scenario(conductor):
        first = await conductor.simulate_get(THUMBNAIL, headers={'Accept': CHROMIUM})
        avif = await rendered(conductor, CHROMIUM)
        again = await conductor.simulate_get(THUMBNAIL, headers={'Accept': CHROMIUM})
        return first, avif, again

    first, avif, again = serve(config, scenario)
    # Nobody waits for a render: the JPEG, to be asked for again.
    assert first.headers['Content-Type'] == 'image/jpeg'
    assert first.headers['Cache-Control'] == 'no-cache'
    assert first.headers['Vary'] == 'Accept'
    assert pixels_of(first).format == 'JPEG'

    version = avif.headers['ETag'].strip('"').split('-')[0]
    assert avif.headers['ETag'] == f'"{version}-320x180-avif"'
    assert avif.headers['Vary'] == 'Accept'
    assert avif.headers['Cache-Control'] == 'public, max-age=60'
    image = pixels_of(avif)
    assert (image.format, image.size) == ('AVIF', (320, 180))
    # Kept by this process, apart from the JPEG.
    assert again.headers['X-ASGILook-Cache'] == 'Hit'
    assert again.content == avif.content


def test_each_format_has_its_own_etag_and_cache_entry(config):
    async def scenario(conductor):
        answers = {}
        for accept in (CHROMIUM, OLD_FIREFOX, '*/*'):
            await rendered(conductor, accept)
            # Twice: the second from this process's memory.
            await conductor.simulate_get(THUMBNAIL, headers={'Accept': accept})
            answers[accept] = await conductor.simulate_get(
                THUMBNAIL, headers={'Accept': accept}
            )
        # A client's validator is for its own format only.
        avif_etag = answers[CHROMIUM].headers['ETag']
        conditional = {
            accept: await conductor.simulate_get(
                THUMBNAIL, headers={'Accept': accept, 'If-None-Match': avif_etag}
            )
            for accept in (CHROMIUM, '*/*')
        }
        return answers, conditional

    answers, conditional = serve(config, scenario)
    types = {accept: resp.headers['Content-Type'] for accept, resp in answers.items()}
    assert types == {
        CHROMIUM: 'image/avif',
        OLD_FIREFOX: 'image/webp',
        '*/*': 'image/jpeg',
    }
    assert all(resp.headers['X-ASGILook-Cache'] == 'Hit' for resp in answers.values())
    assert len({resp.headers['ETag'] for resp in answers.values()}) == 3
    assert len({resp.content for resp in answers.values()}) == 3
    assert answers['*/*'].headers['ETag'].endswith('-320x180"')
    assert [pixels_of(resp).format for resp in answers.values()] == [
        'AVIF',
        'WEBP',
        'JPEG',
    ]
    assert conditional[CHROMIUM].status_code == 304
    assert conditional[CHROMIUM].headers['Vary'] == 'Accept'
    assert conditional['*/*'].status_code == 200


def test_the_format_may_be_chosen_in_the_url(config):
    async def scenario(conductor):
        uri = f'{THUMBNAIL}?format=webp'
        webp = await rendered(conductor, OLD_FIREFOX, uri)
        chosen = await conductor.simulate_get(uri, headers={'Accept': CHROMIUM})
        head = await conductor.simulate_head(uri)
        jpeg = await conductor.simulate_get(
            f'{THUMBNAIL}?format=jpeg', headers={'Accept': CHROMIUM}
        )
        wrong = await conductor.simulate_get(f'{THUMBNAIL}?format=gif')
        return webp, chosen, head, jpeg, wrong

    webp, chosen, head, jpeg, wrong = serve(config, scenario)
    assert chosen.headers['Content-Type'] == 'image/webp'
    assert chosen.content == webp.content
    assert head.headers['Content-Type'] == 'image/webp'
    assert head.headers['Content-Length'] == str(len(webp.content))
    assert head.content == b''
    assert jpeg.headers['Content-Type'] == 'image/jpeg'
    assert wrong.status_code == 400
    assert 'jpeg, webp, avif' in wrong.json['description']


def test_originals_are_always_jpeg(config):
    async def scenario(conductor):
        return await conductor.simulate_get(
            f'/images/{FIRST_IDS[0]}.jpeg', headers={'Accept': CHROMIUM}
        )

    resp = serve(config, scenario)
    assert resp.headers['Content-Type'] == 'image/jpeg'
    assert 'Vary' not in resp.headers


def test_a_failed_render_leaves_the_jpeg_answering(config, monkeypatch, caplog):
    def broken(*args):
        raise OSError('out of memory in the encoder')

    monkeypatch.setattr(renditions, 'render', broken)

    async def scenario(conductor):
        answers = []
        for _ in range(3):
            answers.append(
                await conductor.simulate_get(THUMBNAIL, headers={'Accept': CHROMIUM})
            )
            await asyncio.sleep(0.05)
        return answers

    with caplog.at_level(logging.ERROR, logger='asgilook.storage.store'):
        answers = serve(config, scenario)
    assert [resp.status_code for resp in answers] == [200] * 3
    assert {resp.headers['Content-Type'] for resp in answers} == {'image/jpeg'}
    assert 'Could not render the avif thumbnails' in caplog.text


def test_a_render_of_a_deleted_version_stores_nothing(config):
    async def scenario(conductor):
        document = (await conductor.simulate_get('/images')).json[0]
        # The picture is deleted (its original first) as the render starts.
        for path in (config.storage_path / 'images').listdir():
            path.remove()
        resp = await conductor.simulate_get(THUMBNAIL, headers={'Accept': CHROMIUM})
        await asyncio.sleep(0.2)
        return document, resp

    document, resp = serve(config, scenario)
    assert resp.headers['Content-Type'] == 'image/jpeg'
    version = f'{document["id"]}.{document["version"]}'
    stored = (config.storage_path / 'thumbnails' / version).listdir()
    assert sorted(path.basename for path in stored) == ['160x90.jpeg', '320x180.jpeg']


def test_a_rendition_gone_before_it_is_read_is_answered_by_the_jpeg(
    config, monkeypatch
):
    async def scenario(conductor):
        await rendered(conductor, CHROMIUM)

        async def vanished(*args):
            return None

        # Replaced or deleted by another process, between look-up and read.
        monkeypatch.setattr(Store, 'read_rendition', vanished)
        return await conductor.simulate_get(
            f'{THUMBNAIL}?format=avif', headers={'Accept': CHROMIUM}
        )

    resp = serve(config, scenario)
    assert resp.headers['Content-Type'] == 'image/jpeg'
    assert resp.headers['Cache-Control'] == 'no-cache'
    assert pixels_of(resp).format == 'JPEG'

"""The original kept as uploaded: stored beside the JPEG, served with its name
(``GET /images/{id}/original``), sealed, checked, backed up and deleted with
its version. The containers' walks themselves are in tests/test_containers.py.
"""

import asyncio
import base64
import io
import json
import pathlib
import re
import uuid

import falcon.testing
import PIL.Image
import PIL.PngImagePlugin
import pytest

from asgilook.commands import cli
from asgilook.config import Config
from asgilook.http import downloads
from asgilook.http.app import create_app
from asgilook.storage.blobs import open_blobs
from asgilook.storage.crypto import OLD_KEYS_VARIABLE
from asgilook.storage.crypto import is_sealed
from asgilook.storage.image import Image
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.objects import kept_key
from asgilook.storage.store import Store
from tests.helpers import draw_image
from tests.test_containers import EXIF
from tests.test_containers import encoded
from tests.test_containers import frames_of
from tests.test_containers import gradient
from tests.test_containers import png_chunks

KEY = base64.b64encode(bytes(range(32))).decode()
WHOLE = 1 << 40


def transparent_png():
    """A transparent PNG with text and EXIF chunks in it."""
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text('Author', 'Someone Secret')
    return encoded(gradient((64, 48)), 'PNG', pnginfo=info, exif=EXIF)


def animated(format):
    frames = [gradient((64, 48)).rotate(angle) for angle in (0, 90, 180)]
    if format == 'GIF':
        frames = [frame.convert('RGB').quantize(64) for frame in frames]
    params = {'lossless': True} if format == 'WEBP' else {'comment': b'secret'}
    return encoded(
        frames[0],
        format,
        save_all=True,
        append_images=frames[1:],
        duration=[40, 80, 120],
        loop=0,
        **params,
    )


def upload(client, data, **params):
    response = client.simulate_post('/images', body=data, params=params)
    assert response.status_code == 201, response.text
    return response.json


def get(client, url, **kwargs):
    path, _, query = url.partition('?')
    return client.simulate_get(path, query_string=query, **kwargs)


def stored(config, document, suffix):
    """The stored file of a picture's version (``.jpeg``, ``.original``)."""
    folder = pathlib.Path(str(config.storage_path)) / 'images'
    return folder / f'{document["id"]}.{document["version"]}.{suffix}'


# Uploads and the route


def test_a_transparent_png_is_kept_with_its_alpha_and_without_its_metadata(client):
    data = transparent_png()
    document = upload(client, data, name='Frühling "am" See.png')
    assert document['original'] == f'/images/{document["id"]}/original'

    served = client.simulate_get(document['original'])

    assert served.status_code == 200
    assert served.headers['Content-Type'] == 'image/png'
    assert served.headers['ETag'] == f'"{document["version"]}-original"'
    assert served.headers['Content-Disposition'] == (
        'attachment; filename="Fruhling _am_ See.png"; '
        "filename*=UTF-8''Fr%C3%BChling%20%22am%22%20See.png"
    )
    assert b'tEXt' not in png_chunks(served.content)
    assert b'eXIf' not in png_chunks(served.content)
    assert b'Someone Secret' not in served.content
    assert frames_of(served.content) == frames_of(data)
    with PIL.Image.open(io.BytesIO(served.content)) as image:
        assert image.mode == 'RGBA'
        assert image.getextrema()[3] != (255, 255)
    # The JPEG beside it is the contract's, flattened; it says its name too.
    jpeg = client.simulate_get(document['image'])
    assert jpeg.headers['Content-Type'] == 'image/jpeg'
    assert jpeg.headers['Content-Disposition'] == (
        'inline; filename="Fruhling _am_ See.jpeg"; '
        "filename*=UTF-8''Fr%C3%BChling%20%22am%22%20See.jpeg"
    )


def test_the_original_answers_head_validators_and_ranges(client):
    document = upload(client, transparent_png())
    url = document['original']
    whole = client.simulate_get(url)
    head = client.simulate_head(url)
    assert head.status_code == 200 and head.content == b''
    assert head.headers['Content-Length'] == str(len(whole.content))
    assert head.headers['Content-Disposition'] == (
        f'attachment; filename="asgilook-{document["id"]}.png"; '
        f"filename*=UTF-8''asgilook-{document['id']}.png"
    )
    etag = whole.headers['ETag']
    assert client.simulate_get(url, headers={'If-None-Match': etag}).status_code == 304
    modified = whole.headers['Last-Modified']
    assert (
        client.simulate_get(url, headers={'If-Modified-Since': modified}).status_code
        == 304
    )
    part = client.simulate_get(url, headers={'Range': 'bytes=0-7'})
    assert part.status_code == 206
    assert part.content == whole.content[:8] == b'\x89PNG\r\n\x1a\n'
    assert part.headers['Content-Range'] == f'bytes 0-7/{len(whole.content)}'
    versioned = client.simulate_get(url, params={'v': document['version']})
    assert versioned.content == whole.content
    assert 'immutable' in versioned.headers['Cache-Control']
    again = client.simulate_get(url, params={'v': document['version']})
    assert again.headers['X-ASGILook-Cache'] == 'Hit'
    assert again.headers['Content-Type'] == 'image/png'
    assert (
        again.headers['Content-Disposition'] == versioned.headers['Content-Disposition']
    )
    gone = client.simulate_get(url, params={'v': 'another'})
    assert gone.status_code == 404
    assert f'{url}?v={document["version"]}' in gone.json['description']


def test_a_first_conditional_request_is_a_304_of_the_app(client):
    document = upload(client, transparent_png())
    url = f'{document["original"]}?v={document["version"]}'
    etag = f'"{document["version"]}-original"'
    # Nothing cached yet: the app itself answers.
    answer = get(client, url, headers={'If-None-Match': etag})
    assert answer.status_code == 304
    assert answer.headers['X-ASGILook-Cache'] == 'Miss'
    assert answer.content == b''


@pytest.mark.parametrize(('format', 'extension'), [('GIF', 'gif'), ('WEBP', 'webp')])
def test_an_animation_is_kept_with_every_frame(client, format, extension):
    data = animated(format)
    document = upload(client, data, name=f'loop.{extension}')
    served = client.simulate_get(document['original'])
    assert served.headers['Content-Type'] == f'image/{extension}'
    assert f'filename="loop.{extension}"' in served.headers['Content-Disposition']
    assert b'secret' not in served.content
    assert frames_of(served.content) == frames_of(data)
    assert len(frames_of(served.content)) == 3


@pytest.mark.parametrize('format', ['BMP', 'TIFF'])
def test_a_bmp_or_tiff_is_kept_as_a_lossless_png(client, format):
    data = encoded(gradient((64, 48), mode='RGB'), format)
    document = upload(client, data, name=f'scan.{format.lower()}')
    served = client.simulate_get(document['original'])
    assert served.headers['Content-Type'] == 'image/png'
    assert 'filename="scan.png"' in served.headers['Content-Disposition']
    with PIL.Image.open(io.BytesIO(served.content)) as image:
        assert image.format == 'PNG'
    assert frames_of(served.content) == frames_of(data)


def test_a_jpeg_upload_has_no_original_but_its_jpeg(client):
    document = upload(client, draw_image(format='JPEG'))
    assert document['original'] is None
    listed = client.simulate_get('/images').json
    assert [item['original'] for item in listed] == [None]
    missing = client.simulate_get(f'/images/{document["id"]}/original')
    assert missing.status_code == 404
    assert missing.json['title'] == 'Not Found'
    assert document['image'] in missing.json['description']
    assert client.simulate_head(f'/images/{document["id"]}/original').status_code == (
        404
    )
    unknown = client.simulate_get(f'/images/{uuid.uuid4()}/original')
    assert unknown.status_code == 404


# NOTE: Both sizes: a picture too small for thumbnails finds what to keep
# while it decodes, a larger one beside its thumbnails.
@pytest.mark.parametrize('size', [(64, 48), (640, 480)])
def test_a_cmyk_tiff_keeps_none_and_its_jpeg_is_the_download(client, size):
    data = encoded(gradient(size, mode='RGB').convert('CMYK'), 'TIFF')
    document = upload(client, data, name='print.tiff')
    assert document['original'] is None
    page = client.simulate_get(document['page']).text
    # The page offers the JPEG instead, under the picture's name.
    assert f'href="{document["image"]}?v={document["version"]}"' in page
    assert 'download="print.jpeg"' in page


def tiff_with_a_broken_second_page():
    """A TIFF whose first page is whole and whose second has no size."""
    data = bytearray(encoded(gradient((64, 48), mode='RGB'), 'TIFF'))
    assert data[:4] == b'II*\0'
    first = int.from_bytes(data[4:8], 'little')
    entries = int.from_bytes(data[first : first + 2], 'little')
    link = first + 2 + 12 * entries
    assert data[link : link + 4] == bytes(4)
    data += bytes(len(data) % 2)
    data[link : link + 4] = len(data).to_bytes(4, 'little')
    # One entry, PhotometricInterpretation = RGB; no width, no height.
    data += (1).to_bytes(2, 'little')
    data += (262).to_bytes(2, 'little') + (3).to_bytes(2, 'little')
    data += (1).to_bytes(4, 'little') + (2).to_bytes(4, 'little') + bytes(4)
    return bytes(data)


def test_a_tiff_whose_other_page_is_broken_keeps_none(client):
    # NOTE: Found by tests/test_fuzz.py: counting its pages failed, a 500.
    document = upload(client, tiff_with_a_broken_second_page(), name='scan.tif')
    assert document['original'] is None
    stored = PIL.Image.open(io.BytesIO(client.simulate_get(document['image']).content))
    assert stored.size == (64, 48)


def test_the_page_offers_the_original_kept(client):
    document = upload(client, animated('GIF'), name='loop.gif')
    page = client.simulate_get(document['page']).text
    assert f'href="{document["original"]}?v={document["version"]}"' in page
    assert 'download="loop.gif"' in page


def test_the_store_reads_none_of_a_picture_without_one(config):
    async def scenario():
        store = Store(config)
        try:
            image, _ = await store.save(str(uuid.uuid4()), draw_image(format='JPEG'))
            return image.original, await store.read_kept(image, WHOLE)
        finally:
            await store.process_shutdown(None, None)

    assert asyncio.run(scenario()) == ('', None)


def test_a_private_original_is_404_without_its_signature(client):
    document = upload(client, transparent_png(), visibility='private')
    path, _, query = document['original'].partition('?')
    assert 'signature=' in query and 'expires=' in query
    assert client.simulate_get(path).status_code == 404
    forged = query[:-2] + ('AA' if not query.endswith('AA') else 'BB')
    assert client.simulate_get(path, query_string=forged).status_code == 404
    signed = client.simulate_get(path, query_string=query)
    assert signed.status_code == 200
    assert signed.headers['Cache-Control'].startswith('private')
    assert signed.headers['Content-Type'] == 'image/png'


def test_the_original_is_rooted_under_a_path_prefix(client):
    made = client.simulate_request(
        'POST', '/gallery/images', root_path='/gallery', body=transparent_png()
    ).json
    assert made['original'] == f'/gallery/images/{made["id"]}/original'
    served = client.simulate_get(made['original'], root_path='/gallery')
    assert served.status_code == 200


# The names it is saved under


def image_named(name):
    return Image(Config(), 'f2375273-8049-4b10-b17e-8851db9ac7af', 'x.jpeg',
                 (1, 1), 0, name=name, original='png')  # fmt: skip


@pytest.mark.parametrize(
    ('name', 'ascii', 'encoded_name'),
    [
        ('', 'asgilook-f2375273-8049-4b10-b17e-8851db9ac7af.png',
         'asgilook-f2375273-8049-4b10-b17e-8851db9ac7af.png'),
        ('Müll.tar.gz', 'Mull.tar.png', 'M%C3%BCll.tar.png'),
        ('a"b\\c;d%e/f.png', 'a_b_c_d_e_f.png', 'a%22b%5Cc%3Bd%25e%2Ff.png'),
        ('evil\r\nSet-Cookie: x=1.png', 'evilSet-Cookie: x=1.png',
         'evilSet-Cookie%3A%20x%3D1.png'),
        ('日本語.gif', '___.png', '%E6%97%A5%E6%9C%AC%E8%AA%9E.png'),
        ('.hidden', '.hidden.png', '.hidden.png'),
    ],
)  # fmt: skip
def test_a_hostile_or_foreign_name_makes_a_safe_header(name, ascii, encoded_name):
    header = downloads.content_disposition(
        downloads.ATTACHMENT, image_named(name), 'png'
    )
    assert header == (
        f'attachment; filename="{ascii}"; filename*=UTF-8\'\'{encoded_name}'
    )
    assert header.isascii() and header.isprintable()
    assert header.count('"') == 2


def test_a_name_sent_with_quotes_and_line_breaks_is_served_safely(client):
    document = upload(client, transparent_png(), name='ü "x"\r\n; y.png')
    served = client.simulate_get(document['original'])
    header = served.headers['Content-Disposition']
    assert header.startswith('attachment; filename="u _x__ y.png"; ')
    assert re.fullmatch(r'[ -~]+', header)


# Where it is stored


def test_it_is_sealed_on_disk_and_served_plain(config):
    config.encryption_key = KEY
    client = falcon.testing.TestClient(create_app(config))
    data = transparent_png()
    document = upload(client, data)
    on_disk = stored(config, document, 'original').read_bytes()
    assert is_sealed(on_disk)
    assert b'IHDR' not in on_disk
    served = client.simulate_get(document['original'])
    assert served.content.startswith(b'\x89PNG')
    assert frames_of(served.content) == frames_of(data)


def test_deleting_the_picture_deletes_it(client, config):
    document = upload(client, transparent_png())
    kept = stored(config, document, 'original')
    assert kept.exists()
    token = document['delete_token']
    deleted = client.simulate_delete(
        document['image'], headers={'Authorization': f'Bearer {token}'}
    )
    assert deleted.status_code == 204
    assert not kept.exists()
    assert client.simulate_get(document['original']).status_code == 404


def replaced_while_read(monkeypatch, data):
    """Make the first read of a kept original find it gone: its picture was
    replaced by ``data`` (or, if None, its object lost) since it was looked up."""
    read_kept = Store.read_kept
    calls = []

    async def racing(self, image, whole_up_to, window=None):
        calls.append(image.version)
        if len(calls) == 1:
            if data is not None:
                await self.save(image.image_id, data)
            else:
                await self._objects.originals.delete([kept_key(image.file)])
        return await read_kept(self, image, whole_up_to, window)

    monkeypatch.setattr(Store, 'read_kept', racing)
    return calls


def test_a_picture_replaced_meanwhile_sends_the_new_original_whole(client, monkeypatch):
    document = upload(client, transparent_png())
    newer = encoded(gradient((32, 24)), 'PNG')
    calls = replaced_while_read(monkeypatch, newer)
    served = client.simulate_get(document['original'], headers={'Range': 'bytes=0-7'})
    assert served.status_code == 200
    assert frames_of(served.content) == frames_of(newer)
    assert calls[0] == document['version'] != calls[1]
    assert served.headers['ETag'] == f'"{calls[1]}-original"'


def test_a_picture_replaced_meanwhile_by_a_jpeg_has_none(client, monkeypatch):
    document = upload(client, transparent_png())
    replaced_while_read(monkeypatch, draw_image(format='JPEG'))
    served = client.simulate_get(document['original'])
    assert served.status_code == 404
    assert 'no original kept' in served.json['description']


def test_a_lost_object_is_404(client, monkeypatch):
    document = upload(client, transparent_png())
    replaced_while_read(monkeypatch, None)
    served = client.simulate_get(document['original'])
    assert served.status_code == 404
    assert served.json['description'] == (
        f'The original kept of image {document["id"]} is missing.'
    )


@pytest.mark.s3
def test_on_s3_it_is_stored_served_and_deleted(config, bucket, seaweed_server):
    config.storage_url = bucket
    config.aws = dict(seaweed_server.environ)
    client = falcon.testing.TestClient(create_app(config))
    data = animated('GIF')
    document = upload(client, data)
    served = client.simulate_get(document['original'])
    assert served.headers['Content-Type'] == 'image/gif'
    assert frames_of(served.content) == frames_of(data)
    key = kept_key(f'{document["id"]}.{document["version"]}.jpeg')

    async def size():
        blobs = open_blobs(bucket, config.aws)
        try:
            return await blobs.size(key)
        finally:
            await blobs.close()

    assert asyncio.run(size()) == len(served.content)
    token = document['delete_token']
    client.simulate_delete(
        document['image'], headers={'Authorization': f'Bearer {token}'}
    )
    assert asyncio.run(size()) is None


# The commands


def check(capsys, root, *args, environ=None):
    status = cli.main(['check', '--storage', str(root), '--json', *args], environ or {})
    return status, json.loads(capsys.readouterr().out)


def test_check_finds_a_missing_original_and_cannot_make_it_again(
    capsys, client, config
):
    document = upload(client, encoded(gradient((640, 360)), 'PNG'))
    stored(config, document, 'original').unlink()
    root = pathlib.Path(str(config.storage_path))
    thumbnail = next((root / 'thumbnails').rglob('*.jpeg'))
    thumbnail.unlink()

    status = cli.main(['check', '--storage', str(root)], {})
    out = capsys.readouterr().out
    assert status == 1
    assert 'Images missing their original kept as uploaded (it cannot be made ' in out
    assert f'  images/{document["id"]}.{document["version"]}.original  missing\n' in out
    assert out.endswith(
        '2 problems found; nothing was changed. --repair repairs them (but not a '
        'missing kept original).\n'
    )

    status, found = check(capsys, root, '--repair')
    assert status == 1
    [problem] = found['problems']['kept-original']
    assert (problem['image_id'], problem['detail']) == (document['id'], 'missing')
    assert problem['outcome'].startswith('cannot be repaired: it was the upload')
    assert thumbnail.exists()
    assert client.simulate_get(document['image']).status_code == 200
    assert client.simulate_get(document['original']).status_code == 404

    status = cli.main(['check', '--storage', str(root)], {})
    assert capsys.readouterr().out.endswith(
        '1 problem found, which --repair cannot repair.\n'
    )


def test_check_finds_a_damaged_original_kept(capsys, config):
    config.encryption_key = KEY
    client = falcon.testing.TestClient(create_app(config))
    document = upload(client, transparent_png())
    path = stored(config, document, 'original')
    sealed = bytearray(path.read_bytes())
    sealed[-20] ^= 1
    path.write_bytes(bytes(sealed))
    root = pathlib.Path(str(config.storage_path))
    environ = {'ASGI_LOOK_ENCRYPTION_KEY': KEY}

    status, found = check(capsys, root, '--verify', '--repair', environ=environ)

    assert status == 1
    [problem] = found['problems']['damaged']
    assert problem['path'] == f'images/{path.name}'
    # As a damaged JPEG: it was the upload, and may be sealed with an old key.
    assert problem['outcome'].startswith('cannot be repaired: restore this object')
    assert OLD_KEYS_VARIABLE in problem['outcome']
    assert found['problems']['kept-original'] == []


def test_backup_and_restore_carry_it(capsys, client, config, tmp_path):
    data = animated('GIF')
    document = upload(client, data, name='loop.gif')
    served = client.simulate_get(document['original']).content
    environ = {'ASGI_LOOK_STORAGE_PATH': str(config.storage_path)}
    assert cli.main(['backup', str(tmp_path / 'backup')], environ) == 0
    target = tmp_path / 'restored'
    into = {'ASGI_LOOK_STORAGE_PATH': str(target)}
    assert cli.main(['restore', str(tmp_path / 'backup')], into) == 0
    capsys.readouterr()

    async def restored():
        store = Store(Config.from_environ(into))
        try:
            image = await store.get(document['id'])
            content = await store.read_kept(image, WHOLE)
            return image.original, content.body
        finally:
            await store.process_shutdown(None, None)

    assert asyncio.run(restored()) == ('gif', served)


def test_an_index_moved_elsewhere_keeps_it(capsys, client, config, tmp_path):
    upload(client, transparent_png())
    upload(client, draw_image(format='JPEG'))
    environ = {'ASGI_LOOK_STORAGE_PATH': str(config.storage_path)}
    other = tmp_path / 'other'
    status = cli.main(['migrate', '--to-database', f'sqlite://{other}'], environ)
    assert status == 0, capsys.readouterr()

    async def originals():
        index = SQLiteIndex(other)
        try:
            return [entry.original for entry in (await index.page())[0]]
        finally:
            await index.close()

    assert asyncio.run(originals()) == ['png', '']

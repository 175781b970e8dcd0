"""What an upload becomes: a lossless original where it can be, and its thumbnails."""

import asyncio
import io
import os
import pathlib
import shutil
import struct

import falcon.testing
import PIL.Image
import PIL.ImageCms
import PIL.ImageFile
import pytest

from asgilook.errors import ImageTooLarge
from asgilook.errors import InvalidImage
from asgilook.http.app import create_app
from asgilook.pictures import colour
from asgilook.pictures import jpeg
from asgilook.pictures import pixels
from tests.helpers import decode
from tests.helpers import draw_image
from tests.test_pixels import gray_profile
from tests.test_pixels import swapped_profile

MAX_PIXELS = 50_000_000


def picture(size=(640, 360), mode='RGB', **params):
    """A JPEG of random ellipses in ``mode``, saved with Pillow's ``params``."""
    image = PIL.Image.open(io.BytesIO(draw_image(size))).convert(mode)
    output = io.BytesIO()
    image.save(output, 'JPEG', **params)
    return output.getvalue()


def exif(orientation=1):
    """EXIF with an orientation, a camera and a GPS position."""
    data = PIL.Image.Exif()
    data[0x0112] = orientation
    data[0x010F] = 'Secret Camera Co'
    data[0x8825] = {1: 'N', 2: (51.0, 30.0, 0.0)}
    return data.tobytes()


def srgb_profile():
    return PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB')).tobytes()


def tagless_profile():
    """An RGB profile that parses, but has no tags to build a transform from."""
    profile = bytearray(srgb_profile())
    profile[128:132] = struct.pack('>I', 0)
    return bytes(profile)


def pixels_of(data):
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return image.mode, image.size, image.tobytes()


def stored_file(client, document):
    return client.simulate_get(document['image']).content


# Kept as uploaded


@pytest.mark.parametrize(
    'params',
    [
        {},
        {'progressive': True},
        {'exif': exif(), 'comment': b'taken at home', 'icc_profile': srgb_profile()},
        {'xmp': b'<x:xmpmeta>secret</x:xmpmeta>', 'quality': 95, 'subsampling': 0},
    ],
    ids=['plain', 'progressive', 'exif-comment-srgb', 'xmp'],
)
def test_an_upright_srgb_jpeg_keeps_its_pixels_and_loses_its_metadata(client, params):
    upload = picture(**params) + b'trailing junk'

    document = client.simulate_post('/images', body=upload).json
    stored = stored_file(client, document)

    assert pixels_of(stored) == pixels_of(upload)
    assert stored == jpeg.strip_metadata(upload)
    assert len(stored) < len(upload)
    info = PIL.Image.open(io.BytesIO(stored)).info
    assert not {'exif', 'icc_profile', 'comment', 'xmp'} & set(info)
    for secret in (b'Secret Camera', b'taken at home', b'secret', b'junk'):
        assert secret not in stored
    if params.get('progressive'):
        assert info.get('progressive')


def test_a_grey_jpeg_stays_grey_and_its_thumbnails_are_rgb(client):
    upload = picture(mode='L')
    document = client.simulate_post('/images', body=upload).json

    assert pixels_of(stored_file(client, document)) == pixels_of(upload)
    for uri in document['thumbnails']:
        assert decode(client.simulate_get(uri).content).mode == 'RGB'


# Converted, because the pixels must change


@pytest.mark.parametrize(
    'upload',
    [
        picture(exif=exif(orientation=6)),
        picture(icc_profile=swapped_profile()),
        picture(mode='L', icc_profile=gray_profile(1.0)),
        picture(mode='CMYK'),
    ],
    ids=['rotated', 'other-profile', 'grey-profile', 'cmyk'],
)
def test_a_jpeg_whose_pixels_must_change_is_converted(client, upload):
    document = client.simulate_post('/images', body=upload).json
    stored = stored_file(client, document)

    assert stored != jpeg.strip_metadata(upload)
    image = decode(stored)
    assert image.mode == 'RGB'
    assert 'icc_profile' not in image.info
    assert tuple(document['size']) == image.size


def test_a_rotated_jpeg_is_stored_upright(client):
    document = client.simulate_post(
        '/images', body=picture((640, 360), exif=exif(orientation=6))
    ).json
    assert document['size'] == [360, 640]


def test_a_profile_that_cannot_be_used_leaves_the_colours_alone(client):
    red = PIL.Image.new('RGB', (64, 64), (255, 0, 0))
    output = io.BytesIO()
    red.save(output, 'JPEG', icc_profile=tagless_profile())

    document = client.simulate_post('/images', body=output.getvalue()).json
    pixel = decode(stored_file(client, document)).getpixel((32, 32))
    assert pixel[0] > 240 and max(pixel[1:]) < 15


def test_an_srgb_profile_is_recognised_by_what_it_does():
    srgb = PIL.ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
    assert colour.is_srgb(srgb, 'RGB')
    swapped = PIL.ImageCms.ImageCmsProfile(io.BytesIO(swapped_profile()))
    # It calls itself sRGB, but its red is sRGB's blue.
    assert 'sRGB' in swapped.profile.profile_description
    assert not colour.is_srgb(swapped, 'RGB')
    assert not colour.is_srgb(
        PIL.ImageCms.ImageCmsProfile(io.BytesIO(gray_profile(1.0))), 'L'
    )


# Thumbnails: rendered once, at upload, and stored beside the original


def thumbnail_files(storage, document):
    name = pathlib.Path(
        next(pathlib.Path(storage, 'images').glob(f'{document["id"]}.*.jpeg'))
    ).stem
    return pathlib.Path(storage, 'thumbnails', name)


def test_the_series_is_rendered_at_upload_and_served_from_files(
    client, config, monkeypatch
):
    document = client.simulate_post('/images', body=picture((1001, 333))).json
    directory = thumbnail_files(config.storage_path, document)
    assert sorted(os.listdir(directory)) == ['250x83.jpeg', '500x166.jpeg']

    def broken(*args, **kwargs):
        raise AssertionError('Pillow was called to serve a thumbnail')

    monkeypatch.setattr(PIL.Image, 'open', broken)
    for uri in document['thumbnails']:
        resp = client.simulate_get(uri)
        assert resp.status_code == 200
        name = uri.rsplit('/', 1)[1]
        assert resp.content == (directory / name).read_bytes()


def test_a_missing_series_is_rendered_once_and_stored(config, monkeypatch):
    client = falcon.testing.TestClient(create_app(config))
    document = client.simulate_post('/images', body=picture((640, 360))).json
    directory = thumbnail_files(config.storage_path, document)
    # As a version stored before thumbnails were rendered at upload.
    shutil.rmtree(directory)

    renders = []
    real = pixels.thumbnails

    def counted(data, sizes):
        renders.append(sizes)
        return real(data, sizes)

    monkeypatch.setattr(pixels, 'thumbnails', counted)

    async def at_once():
        async with client as conductor:
            return await asyncio.gather(
                *(conductor.simulate_get(uri) for uri in document['thumbnails'] * 4)
            )

    answers = asyncio.run(at_once())
    assert renders == [[(320, 180), (160, 90)]]
    for resp, size in zip(answers, [(320, 180), (160, 90)] * 4, strict=True):
        assert decode(resp.content).size == size
    assert sorted(os.listdir(directory)) == ['160x90.jpeg', '320x180.jpeg']
    fresh = falcon.testing.TestClient(create_app(config))
    assert fresh.simulate_get(document['thumbnails'][0]).status_code == 200
    assert len(renders) == 1


def test_a_thumbnail_of_a_vanished_original_is_not_found(config):
    client = falcon.testing.TestClient(create_app(config))
    document = client.simulate_post('/images', body=picture((640, 360))).json
    directory = thumbnail_files(config.storage_path, document)
    shutil.rmtree(directory)
    for path in pathlib.Path(config.storage_path, 'images').iterdir():
        path.unlink()

    resp = client.simulate_get(document['thumbnails'][0])
    assert resp.status_code == 404
    assert 'missing' in resp.json['description']


def test_ingest_refuses_what_convert_refuses():
    for bad in (b'', b'not a picture', picture()[:200]):
        with pytest.raises(InvalidImage):
            pixels.ingest(bad, MAX_PIXELS, 64)
    with pytest.raises(ImageTooLarge):
        pixels.ingest(picture((640, 360)), 1000, 64)


def test_thumbnails_of_any_size_fit_exactly():
    stored = picture((333, 211))
    for sizes in ([(300, 200)], [(166, 105), (83, 52)]):
        rendered = pixels.thumbnails(stored, sizes)
        assert [decode(data).size for data in rendered] == sizes


def test_running_out_of_memory_while_checking_a_jpeg_is_not_blamed_on_it(
    monkeypatch,
):
    upload = picture()
    loads = []

    def exhausted(self):
        loads.append(self.size)
        raise MemoryError

    monkeypatch.setattr(PIL.ImageFile.ImageFile, 'load', exhausted)
    with pytest.raises(MemoryError):
        pixels.ingest(upload, MAX_PIXELS, 64)
    # The half-scale decode of a JPEG kept as uploaded ran out of memory.
    assert loads == [(320, 180)]


def test_a_jpeg_whole_in_form_but_undecodable_is_refused(client, config):
    upload = bytearray(picture((64, 64)))
    at = upload.index(b'\xff\xc4')  # The first Huffman table: its 16 counts.
    upload[at + 5 : at + 21] = b'\xff' * 16
    assert jpeg.strip_metadata(bytes(upload)) is not None

    resp = client.simulate_post('/images', body=bytes(upload))
    assert resp.status_code == 400
    assert resp.json['title'] == 'Invalid Image'
    assert 'cannot be decoded' in resp.json['description']
    assert os.listdir(pathlib.Path(config.storage_path, 'images')) == []

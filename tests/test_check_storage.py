"""``asgilook check`` wherever the objects are: S3, renditions apart, sealed.

The same check as on a local directory (tests/test_check.py), on SeaweedFS;
with the renditions in another backend; with objects that fail
authentication (under a key the service lacks, swapped, or damaged inside a
segment, which only --verify finds); and over listings of many pages.
"""

import asyncio
import base64
import errno
import io
import json
import os
import pathlib
import shutil
import types
import weakref

import falcon.testing
import PIL.Image
import pytest

from asgilook.commands import check
from asgilook.commands import cli
from asgilook.commands.check import output
from asgilook.commands.check import reading
from asgilook.commands.check import walk
from asgilook.http.app import create_app
from asgilook.pictures import renditions
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs import storage_error
from asgilook.storage.blobs import unavailable
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.s3 import S3Blobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.crypto import Keyring
from asgilook.storage.index.sqlite import SQLiteIndex
from asgilook.storage.objects import Objects
from asgilook.storage.objects import animation_key
from asgilook.storage.objects import kept_key
from asgilook.storage.objects import original_key
from asgilook.storage.objects import thumbnail_key
from asgilook.storage.objects import thumbnails_prefix
from tests.helpers import draw_image
from tests.test_check import animation
from tests.test_check import decode
from tests.test_check import make_old
from tests.test_check import save

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
WIDE = (640, 360)


def b64(key):
    return base64.b64encode(key).decode()


@pytest.fixture
def local(config, monkeypatch):
    """Objects in the storage directory, as ever."""
    for name in ('ASGI_LOOK_DATABASE_URL', 'ASGI_LOOK_STORAGE_PATH'):
        monkeypatch.delenv(name, raising=False)
    root = pathlib.Path(str(config.storage_path))
    return types.SimpleNamespace(
        config=config, root=root, environ={}, originals=str(root), renditions=None
    )


@pytest.fixture
def s3(config, bucket, seaweed_server):
    """Objects in a fresh prefix of the SeaweedFS bucket; the index stays local."""
    config.storage_url = bucket
    config.aws = dict(seaweed_server.environ)
    return types.SimpleNamespace(
        config=config,
        root=pathlib.Path(str(config.storage_path)),
        environ={**seaweed_server.environ, 'ASGI_LOOK_STORAGE_URL': bucket},
        originals=bucket,
        renditions=None,
    )


@pytest.fixture(params=['local', pytest.param('s3', marks=pytest.mark.s3)])
def site(request):
    return request.getfixturevalue(request.param)


def sealed(site, key=KEY):
    """Objects of ``site`` sealed with ``key`` from now on, and the check's too."""
    site.config.encryption_key = b64(key)
    site.environ = {**site.environ, 'ASGI_LOOK_ENCRYPTION_KEY': b64(key)}


def raw(site, renditions=False):
    """The backend of the originals (or renditions) as stored: nothing unsealed."""
    url = site.renditions if renditions and site.renditions else site.originals
    return open_blobs(url, site.config.aws)


def call(blobs, method, *args):
    async def calling():
        try:
            return await getattr(blobs, method)(*args)
        finally:
            await blobs.close()

    return asyncio.run(calling())


def stored(site, key, renditions=False):
    """The bytes stored under ``key`` (sealed, if it is)."""
    found = call(raw(site, renditions), 'open', key, 1 << 40)
    return found.body


def listing(site, prefix, renditions=False):
    async def listed():
        blobs = raw(site, renditions)
        try:
            return [item async for item in blobs.list(prefix)]
        finally:
            await blobs.close()

    return asyncio.run(listed())


def counted(site):
    """The objects a check counts, and their bytes: those of the layout."""
    items = [
        item
        for renditions in {False, bool(site.renditions)}
        for prefix, depth in (('images', 2), ('thumbnails', 3))
        for item in listing(site, prefix, renditions)
        if len(item.key.split('/')) == depth
    ]
    return len(items), sum(item.size for item in items)


def checked(capsys, site, *args):
    """``asgilook check`` of ``site``, as a service there is configured."""
    status = cli.main(['check', '--storage', str(site.root), *args], site.environ)
    out, err = capsys.readouterr()
    return status, out, err


def verified(capsys, site, repair=False, as_json=False):
    """``asgilook check --verify`` (:func:`check.run` with ``verify``)."""
    status = check.run(
        site.root, repair=repair, as_json=as_json, verify=True, environ=site.environ
    )
    out, err = capsys.readouterr()
    return status, out, err


def noise(size=(1200, 900)):
    """A JPEG that takes many segments once sealed (some 900 kB)."""
    output = io.BytesIO()
    PIL.Image.effect_noise(size, 120).convert('RGB').save(output, 'JPEG', quality=95)
    return output.getvalue()


def flip_middle(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def every_kind(site):
    """Something of every kind wrong in ``site``'s objects, and strays; the
    images, and their original files by name."""
    images = asyncio.run(
        save(
            site.config,
            {
                'gone': draw_image(WIDE),
                'emptied': draw_image(WIDE),
                'one-thumbnail': draw_image(WIDE),
                'no-thumbnails': draw_image(WIDE),
                'intact': draw_image(WIDE),
                'moving': animation(),
                'orphan': animation(),
            },
            unlisted=('orphan',),
        )
    )
    files = {name: image.file for name, image in images.items()}
    call(raw(site), 'delete', [original_key(files['gone'])])
    call(raw(site), 'put', original_key(files['emptied']), b'')
    call(raw(site), 'delete', [thumbnail_key(files['one-thumbnail'], (160, 90))])
    call(raw(site), 'delete_prefix', thumbnails_prefix(files['no-thumbnails']))
    call(raw(site), 'delete', [animation_key(files['moving'])])
    # Not asgilook's: left alone, and not counted.
    for key in (
        'images/notes/readme.txt',
        'thumbnails/README',
        f'{thumbnails_prefix(files["intact"])}notes.txt',
        'elsewhere/picture.jpeg',
    ):
        call(raw(site), 'put', key, b'Not a picture.\n')
    return images, files


def served(config, images):
    """Every thumbnail of ``images`` is served."""
    client = falcon.testing.TestClient(create_app(config))
    for image in images:
        for size in image.thumbnail_sizes():
            width, height = size
            uri = f'/thumbnails/{image.image_id}/{width}x{height}.jpeg'
            decode(client.simulate_get(uri).content, size)


@pytest.mark.s3
def test_every_kind_of_damage_on_s3_is_found_and_repaired(capsys, s3):
    images, files = every_kind(s3)
    objects, size = counted(s3)

    status, out, err = checked(capsys, s3, '--grace', '0')

    assert (status, err) == (1, '')
    assert out.startswith(
        f'Checked {s3.originals} against its index (SQLite, '
        f'{s3.root / SQLiteIndex.FILE}): 6 images, {objects} objects, '
    )
    orphan = files['orphan']
    for expected in [
        'Images without their picture (the original is missing or empty): 2\n',
        f'  images/{files["gone"]}  missing\n',
        f'  images/{files["emptied"]}  empty\n',
        'Images missing thumbnails: 2\n',
        f'  {thumbnails_prefix(files["one-thumbnail"])}  160x90.jpeg\n',
        f'  {thumbnails_prefix(files["no-thumbnails"])}  320x180.jpeg, 160x90.jpeg\n',
        'Images missing their animation (it cannot be made again): 1\n',
        f'  {animation_key(files["moving"])}  missing\n',
        'Orphans (objects and thumbnail folders no image refers to): 4, ',
        f'  {original_key(orphan)}  ',
        f'  {kept_key(orphan)}  ',
        f'  {animation_key(orphan)}  ',
        f'  {thumbnails_prefix(orphan)}  ',
        '\n9 problems found; nothing was changed. --repair repairs them (but not a '
        'missing animation).\n',
    ]:
        assert expected in out
    assert 'notes' not in out and 'README' not in out and 'elsewhere' not in out
    assert '.partial' not in out

    status, out, err = checked(capsys, s3, '--grace', '0', '--json')
    document = json.loads(out)
    assert (document['storage'], document['renditions']) == (s3.originals, None)
    assert (document['files'], document['bytes']) == (objects, size)
    assert {kind: len(found) for kind, found in document['problems'].items()} == {
        'no-picture': 2,
        'thumbnails': 2,
        'animation': 1,
        'kept-original': 0,
        'damaged': 0,
        'orphan': 4,
        'partial': 0,
    }

    status, out, err = checked(capsys, s3, '--grace', '0', '--repair')
    assert status == 1
    assert out.count('  -> removed from the index\n') == 2
    assert out.count('  -> rendered again\n') == 2
    assert out.count('  -> removed\n') == 4
    assert 'cannot be repaired: it was made from the upload' in out
    assert out.endswith('\nRepaired 8 of 9 problems; 1 could not be (see above).\n')
    for key in (original_key(orphan), kept_key(orphan), animation_key(orphan)):
        assert call(raw(s3), 'size', key) is None
    assert listing(s3, thumbnails_prefix(orphan)) == []
    assert listing(s3, thumbnails_prefix(files['gone'])) == []
    # What is not asgilook's is still there.
    assert call(raw(s3), 'size', 'elsewhere/picture.jpeg') == 15

    status, out, err = checked(capsys, s3, '--grace', '0')
    assert status == 1
    assert ': 4 images, ' in out
    assert out.endswith(
        '\nImages missing their animation (it cannot be made again): 1\n'
        f'  {animation_key(files["moving"])}  missing\n'
        '\n1 problem found, which --repair cannot repair.\n'
    )
    # The storage directory holds the index only.
    assert not (s3.root / 'images').exists()
    assert not (s3.root / 'thumbnails').exists()

    served(
        s3.config,
        [images[name] for name in ('one-thumbnail', 'no-thumbnails', 'intact')],
    )


@pytest.mark.s3
def test_renditions_apart_local_thumbnails_and_originals_on_s3(capsys, s3, tmp_path):
    renditions = tmp_path / 'renditions'
    s3.config.renditions_url = str(renditions)
    s3.renditions = str(renditions)
    s3.environ['ASGI_LOOK_RENDITIONS_URL'] = str(renditions)
    images = asyncio.run(
        save(
            s3.config,
            {
                'gone': draw_image(WIDE),
                'one-thumbnail': draw_image(WIDE),
                'moving': animation(),
                'orphan': animation(),
            },
            unlisted=('orphan',),
        )
    )
    files = {name: image.file for name, image in images.items()}
    call(raw(s3), 'delete', [original_key(files['gone'])])
    thumbnail = renditions / thumbnail_key(files['one-thumbnail'], (160, 90))
    thumbnail.unlink()
    orphan = files['orphan']
    # The orphan's animation and thumbnails are here, its original on S3.
    assert (renditions / animation_key(orphan)).is_file()
    assert call(raw(s3), 'size', animation_key(orphan)) is None
    make_old(renditions / animation_key(orphan), renditions / thumbnails_prefix(orphan))
    partial = thumbnail.parent / '.320x180.avif.0123abcd.partial'
    partial.write_bytes(b'half')
    make_old(partial)
    objects, size = counted(s3)

    status, out, err = checked(capsys, s3, '--grace', '60')

    assert (status, err) == (1, '')
    assert out.startswith(
        f'Checked {s3.originals} (renditions in {renditions}) against its index '
        f'(SQLite, {s3.root / SQLiteIndex.FILE}): 3 images, {objects + 1} objects, '
    )
    for expected in [
        f'  {original_key(files["gone"])}  missing\n',
        f'  {thumbnails_prefix(files["one-thumbnail"])}  160x90.jpeg\n',
        'Orphans (objects and thumbnail folders no image refers to): 2, ',
        f'  {animation_key(orphan)}  ',
        f'  {thumbnails_prefix(orphan)}  ',
        # Just written to S3: younger than the grace.
        f'  {original_key(orphan)}  ',
        'Stale .partial files (writes that never finished): 1, 4 B\n',
        f'  {thumbnails_prefix(files["one-thumbnail"])}.320x180.avif.0123abcd.partial'
        '  4 B, 2.0 h old\n',
    ]:
        assert expected in out
    document = json.loads(checked(capsys, s3, '--grace', '60', '--json')[1])
    assert (document['storage'], document['renditions']) == (
        s3.originals,
        str(renditions),
    )
    # With the upload kept beside it, written at the same time.
    assert [p['path'] for p in document['left_alone']] == [
        original_key(orphan),
        kept_key(orphan),
    ]

    status, out, err = checked(capsys, s3, '--grace', '0', '--repair')
    assert (status, err) == (0, '')
    assert out.endswith('\nRepaired 7 problems.\n')
    assert decode(thumbnail.read_bytes(), (160, 90))
    assert not partial.exists()
    assert not (renditions / thumbnails_prefix(orphan)).exists()
    assert not (renditions / animation_key(orphan)).exists()
    assert call(raw(s3), 'size', original_key(orphan)) is None
    assert call(raw(s3), 'size', kept_key(orphan)) is None
    assert not (renditions / thumbnails_prefix(files['gone'])).exists()

    status, out, err = checked(capsys, s3, '--grace', '0')
    assert status == 0
    objects, size = counted(s3)
    assert out.endswith(
        f': 2 images, {objects} objects, {output.size(size)}.\n\nNo problems found.\n'
    )


def damage_sealed(site):
    """Sealed objects that fail authentication: under a key the service lacks
    (alien), stored under another's name (swapped), and damaged inside a
    segment (big)."""
    sealed(site)
    pictures = {name: draw_image(WIDE) for name in ('alien', 'swapped', 'intact')}
    images = asyncio.run(save(site.config, {**pictures, 'big': noise()}))
    files = {name: image.file for name, image in images.items()}
    alien = original_key(files['alien'])
    other = SealedBlobs(raw(site), Keyring(OTHER_KEY))
    call(other, 'put', alien, pictures['alien'])
    swapped = thumbnail_key(files['swapped'], (160, 90))
    there = stored(site, thumbnail_key(files['intact'], (160, 90)))
    call(raw(site), 'put', swapped, there)
    # A byte flipped in the middle of a big original: its header is intact.
    big = original_key(files['big'])
    data = stored(site, big)
    assert len(data) > 8 * 64 * 1024
    call(raw(site), 'put', big, flip_middle(data))
    # Its header still opens, and says its size.
    size = call(SealedBlobs(raw(site), Keyring(KEY)), 'size', big)
    assert size > 8 * 64 * 1024
    return types.SimpleNamespace(
        images=images, alien=alien, swapped=swapped, big=big, data=data
    )


def test_objects_that_fail_authentication_are_damaged(capsys, site):
    damage = damage_sealed(site)
    images, alien, swapped, big = (
        damage.images,
        damage.alien,
        damage.swapped,
        damage.big,
    )

    status, out, err = checked(capsys, site)

    assert (status, err) == (1, '')
    assert (
        'Damaged objects (they fail authentication: damaged, swapped, or sealed '
        'with a key that is not configured): 2\n'
    ) in out
    assert (
        f'  {alien}  original: it was sealed with key id '
        f'{Keyring(OTHER_KEY).current_id.hex()}, and no key with that id is '
        'configured (ASGI_LOOK_ENCRYPTION_KEY, ASGI_LOOK_ENCRYPTION_OLD_KEYS)\n'
    ) in out
    assert (
        f'  {swapped}  thumbnail: its header fails authentication: it is damaged, '
        'or it is the object of another name\n'
    ) in out
    # Reading the header and size does not find a damaged segment.
    assert big not in out
    assert out.endswith(
        '\n2 problems found; nothing was changed. --repair repairs them (but not a '
        'damaged original or animation).\n'
    )

    status, out, err = verified(capsys, site)
    assert (status, err) == (1, '')
    assert ', every object of its images read whole.\n' in out.splitlines()[0] + '\n'
    assert f'  {big}  original: segment ' in out
    assert ' fails authentication\n' in out
    assert out.count('  original: ') == 2

    status, out, err = verified(capsys, site, as_json=True)
    document = json.loads(out)
    assert document['verify'] is True
    damaged = {p['path']: p for p in document['problems']['damaged']}
    assert set(damaged) == {alien, swapped, big}
    assert damaged[big]['image_id'] == images['big'].image_id
    assert damaged[big]['detail'].startswith('original: segment ')
    assert document['status'] == 1

    status, out, err = verified(capsys, site, repair=True)
    assert status == 1
    advice = (
        '  -> cannot be repaired: restore this object from a backup, or delete the '
        'image; if it was sealed with a key this service lacks, add that key to '
        'ASGI_LOOK_ENCRYPTION_OLD_KEYS\n'
    )
    assert out.count(advice) == 2
    assert f'  {swapped}  thumbnail: its header fails authentication' in out
    assert '  -> rendered again\n' in out
    assert out.endswith('\nRepaired 1 of 3 problems; 2 could not be (see above).\n')
    # The damaged originals are kept as they are, to be restored.
    assert stored(site, big) == flip_middle(damage.data)
    assert call(SealedBlobs(raw(site), Keyring(OTHER_KEY)), 'size', alien)

    client = falcon.testing.TestClient(create_app(site.config))
    response = client.simulate_get(
        f'/thumbnails/{images["swapped"].image_id}/160x90.jpeg'
    )
    decode(response.content, (160, 90))
    status, out, err = checked(capsys, site, '--json')
    assert [p['path'] for p in json.loads(out)['problems']['damaged']] == [alien]


def test_damaged_renditions_are_rendered_again_or_said(capsys, local, monkeypatch):
    sealed(local)
    images = asyncio.run(
        save(
            local.config,
            {
                'still': draw_image(WIDE),
                'moving': animation(),
                **{f'asked-{n}': draw_image(WIDE) for n in range(3)},
            },
        )
    )
    still, moving = images['still'].file, images['moving'].file
    # AVIF and WebP thumbnails (made when clients first ask for them) are
    # read too, a few at a time.
    keyring = SealedBlobs(LocalBlobs(local.root), Keyring(KEY))
    for n in range(3):
        image = images[f'asked-{n}']
        original = call(keyring, 'open', original_key(image.file), 1 << 30).body
        sizes = image.thumbnail_sizes()
        for name in ('avif', 'webp'):
            rendered = renditions.render(original, sizes, name)
            for size, data in zip(sizes, rendered, strict=True):
                key = thumbnail_key(image.file, size, name)
                call(
                    SealedBlobs(LocalBlobs(local.root), Keyring(KEY)), 'put', key, data
                )
    asked = [
        item.key
        for item in listing(local, 'thumbnails')
        if not item.key.endswith('.jpeg')
    ]
    assert len(asked) == 3 * 2 * 2
    monkeypatch.setattr(reading, 'BATCH', 5)
    other = SealedBlobs(LocalBlobs(local.root), Keyring(OTHER_KEY))
    # WebP thumbnails (made when first asked for), an AVIF one of a size not in
    # the series, and an animation, all under a key the service lacks.
    webp = [thumbnail_key(still, size, 'webp') for size in ((320, 180), (160, 90))]
    stray = thumbnail_key(still, (7, 7), 'avif')
    for key in [*webp, stray]:
        call(other, 'put', key, b'not even a picture')
    call(other, 'put', animation_key(moving), b'not even a picture')

    status, out, err = checked(capsys, local)

    assert status == 1
    for key, role in [
        *((key, 'thumbnail') for key in webp),
        (stray, 'thumbnail'),
        (animation_key(moving), 'animation'),
    ]:
        assert f'  {key}  {role}: it was sealed with key id ' in out
    assert out.endswith(
        '\n4 problems found; nothing was changed. --repair repairs '
        'them (but not a damaged original or animation).\n'
    )

    status, out, err = checked(capsys, local, '--repair')
    assert status == 1
    assert out.count('  -> rendered again\n') == 2
    assert '  -> removed: its size is not in the series\n' in out
    assert (
        '  -> cannot be repaired: restore this object from a backup, or delete the '
        'image and upload the picture again\n'
    ) in out
    for key in webp:
        rendered = asyncio.run(
            SealedBlobs(LocalBlobs(local.root), Keyring(KEY)).open(key, 1 << 30)
        )
        assert PIL.Image.open(io.BytesIO(rendered.body)).format == 'WEBP'
    assert not (local.root / stray).exists()
    assert out.endswith('\nRepaired 3 of 4 problems; 1 could not be (see above).\n')


def test_without_the_keys_nothing_is_repaired(capsys, local):
    sealed(local)
    asyncio.run(save(local.config, {'a': draw_image(WIDE), 'b': draw_image(WIDE)}))
    local.environ = {}

    status, out, err = checked(capsys, local)
    assert status == 1
    assert 'and no key with that id is configured' in out
    assert out.endswith('\n2 problems found, which --repair cannot repair.\n')

    status, out, err = checked(capsys, local, '--repair')
    assert status == 1
    assert out.endswith(
        '\n2 problems found. Nothing was repaired: no image of the index has its '
        'picture in this storage directory, so they may not belong together (see '
        '--storage and --database-url). 2 of its originals fail authentication: '
        "are the keys the service's (ASGI_LOOK_ENCRYPTION_KEY, "
        'ASGI_LOOK_ENCRYPTION_OLD_KEYS)?\n'
    )
    assert '-> ' not in out


def test_verify_reads_plain_objects_whole_and_finds_the_same(capsys, local):
    images = asyncio.run(
        save(
            local.config,
            {
                'gone': draw_image(WIDE),
                'emptied': draw_image(WIDE),
                'one-thumbnail': draw_image(WIDE),
                'big': noise(),
            },
        )
    )
    images['gone'].path.unlink()
    images['emptied'].path.write_bytes(b'')
    images['one-thumbnail'].thumbnail_path((160, 90)).unlink()

    status, out, err = checked(capsys, local, '--json')
    plain = json.loads(out)
    status, out, err = verified(capsys, local, as_json=True)
    whole = json.loads(out)

    assert status == 1
    assert (plain['verify'], whole['verify']) == (False, True)
    assert plain['problems'] == whole['problems']
    assert {kind: len(found) for kind, found in whole['problems'].items()} == {
        'no-picture': 2,
        'thumbnails': 1,
        'animation': 0,
        'kept-original': 0,
        'damaged': 0,
        'orphan': 0,
        'partial': 0,
    }


@pytest.mark.parametrize(
    'blobs', [LocalBlobs, pytest.param(S3Blobs, marks=pytest.mark.s3)]
)
def test_listings_of_many_pages_are_never_held_whole(
    capsys, request, monkeypatch, blobs
):
    site = request.getfixturevalue('local' if blobs is LocalBlobs else 's3')
    pictures = {f'image-{n}': draw_image((256, 256)) for n in range(6)}
    orphans = {f'orphan-{n}': draw_image((256, 256)) for n in range(3)}
    images = asyncio.run(save(site.config, {**pictures, **orphans}, tuple(orphans)))
    objects, size = counted(site)
    # An original, the PNG kept as uploaded and two thumbnails each.
    assert objects == 9 * 4

    class Tracked(Listed):
        """A Listed that can be told apart once dropped."""

    alive = weakref.WeakSet()
    most = []
    real = blobs.list

    async def tracked(self, prefix=''):
        async for item in real(self, prefix):
            most.append(len(alive))
            held = Tracked(item.key, item.size, item.modified)
            alive.add(held)
            yield held

    monkeypatch.setattr(blobs, 'PAGE', 2)
    monkeypatch.setattr(blobs, 'list', tracked)
    monkeypatch.setattr(walk, 'PAGE', 2)

    status, out, err = checked(capsys, site, '--grace', '0', '--json')
    listed = list(most)

    document = json.loads(out)
    assert (document['images'], document['files'], document['bytes']) == (
        6,
        objects,
        size,
    )
    found = sorted(p['path'] for p in document['problems']['orphan'])
    assert found == sorted(
        key
        for name in orphans
        for key in (
            original_key(images[name].file),
            kept_key(images[name].file),
            thumbnails_prefix(images[name].file),
        )
    )
    folder = next(p for p in document['problems']['orphan'] if p['path'].endswith('/'))
    assert folder['bytes'] == sum(item.size for item in listing(site, folder['path']))
    assert document['found'] == 9 and status == 1
    # Each object of the listings was dropped before the next came.
    assert len(listed) == objects and max(listed) <= 2


def test_a_backend_that_fails_during_the_check(capsys, local, monkeypatch):
    images = asyncio.run(
        save(local.config, {name: draw_image((256, 256)) for name in 'abcd'})
    )
    failing = original_key(images['b'].file)
    real = LocalBlobs.open

    async def open(self, key, *args, **kwargs):
        if key == failing:
            raise unavailable('a disk error')
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalBlobs, 'open', open)

    status, out, err = checked(capsys, local)

    assert (status, out) == (3, '')
    assert err == (
        f'asgilook check: cannot check {local.root}: The image store cannot be used '
        'right now (a disk error); try again later.\n'
    )


def test_a_wrong_storage_url_cannot_be_checked(capsys, local):
    asyncio.run(save(local.config, {'a': draw_image((256, 256))}))
    local.environ = {'ASGI_LOOK_STORAGE_URL': 'ftp://pictures'}

    status, out, err = checked(capsys, local)

    assert (status, out) == (3, '')
    assert "Unsupported storage URL scheme 'ftp://'" in err


def test_writes_that_finish_while_the_folders_are_read(capsys, local, monkeypatch):
    images = asyncio.run(
        save(local.config, {'a': draw_image((256, 256)), 'b': draw_image((256, 256))})
    )
    root = local.root
    finishing = root / 'images' / '.a.jpeg.0123abcd.partial'
    finishing.write_bytes(b'half')
    discarded = root / thumbnails_prefix(images['b'].file)
    real = os.scandir

    class Racing:
        """A folder read while a write finishes, and a version is discarded."""

        def __init__(self, path):
            self._entries = real(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._entries.close()

        def __iter__(self):
            for entry in self._entries:
                if entry.path == str(finishing):
                    finishing.unlink()
                elif entry.path == str(discarded).rstrip('/') and discarded.exists():
                    shutil.rmtree(discarded)
                yield entry

    monkeypatch.setattr(os, 'scandir', Racing)

    status, out, err = checked(capsys, local, '--grace', '0')

    # Neither is taken for damage; the thumbnails discarded are missing.
    assert '.partial' not in out
    assert f'  {thumbnails_prefix(images["b"].file)}  128x128.jpeg' in out
    assert status == 1


def test_objects_left_behind_by_a_removal_from_the_index(capsys, local, monkeypatch):
    images = asyncio.run(
        save(local.config, {'gone': draw_image(WIDE), 'kept': draw_image(WIDE)})
    )
    images['gone'].path.unlink()

    async def discard_version(self, file):
        ex = OSError(errno.EIO, os.strerror(errno.EIO))
        raise storage_error(ex) from ex

    monkeypatch.setattr(Objects, 'discard_version', discard_version)

    status, out, err = checked(capsys, local, '--repair')

    assert (status, err) == (0, '')
    assert (
        '  missing  -> removed from the index; its other objects could not be '
        'removed (Input/output error)\n'
    ) in out
    assert 'The cache in Redis at ' in out
    monkeypatch.undo()
    status, out, err = checked(capsys, local, '--grace', '0')
    assert f'  {thumbnails_prefix(images["gone"].file)}  ' in out


def test_an_original_gone_before_its_thumbnails_are_rendered(
    capsys, local, monkeypatch
):
    images = asyncio.run(save(local.config, {'a': draw_image(WIDE)}))
    images['a'].thumbnail_path((160, 90)).unlink()

    class Meddling(SQLiteIndex):
        async def get(self, image_id):
            entry = await super().get(image_id)
            # A service deletes the image just after it is looked up.
            images['a'].path.unlink(missing_ok=True)
            return entry

    monkeypatch.setattr(check, 'open_index', lambda config: Meddling(local.root))

    status, out, err = checked(capsys, local, '--repair')

    assert status == 1
    assert (
        f'  -> could not be rendered again: its original {images["a"].file} is '
        'missing\n'
    ) in out


def test_a_partial_that_cannot_be_removed(capsys, local, monkeypatch):
    asyncio.run(save(local.config, {'a': draw_image((256, 256))}))
    stuck = local.root / 'images' / '.b.jpeg.0123abcd.partial'
    stuck.write_bytes(b'half')
    make_old(stuck)
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if pathlib.Path(path) == stuck:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, 'unlink', unlink)

    status, out, err = checked(capsys, local, '--repair')

    assert status == 1
    assert (
        '  images/.b.jpeg.0123abcd.partial  4 B, 2.0 h old  -> could not be '
        'removed: Permission denied\n'
    ) in out
    assert stuck.exists()

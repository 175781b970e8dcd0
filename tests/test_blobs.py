"""The storage backends: one contract, on a directory and on a real S3 server.

Every test of the contract runs on :class:`LocalBlobs` over a temporary
directory and on :class:`S3Blobs` over SeaweedFS (tests/seaweed.py), each
in a fresh prefix. Then what only one of them can show: on disk, keys that
would leave the directory, a deleted file read through an open reader,
failed and full writes; on S3, refused credentials and the store going away
and coming back.
"""

import asyncio
import collections
import datetime
import errno
import os
import re
import time

import pytest

from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.storage.blobs import FULL
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Reader
from asgilook.storage.blobs import local
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs import storage_error
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.s3 import S3Blobs
from asgilook.storage.blobs.s3 import s3_config
from asgilook.storage.blobs.s3 import s3_error

DATA = bytes(range(256)) * 1200  # 300 KiB, read in chunks of CHUNK below
CHUNK = 64 * 1024
#: The most one read from a socket brings to obstore (hyper's read buffer).
SOCKET_READ = 8192 + 4096 * 100
BAD_KEYS = ['', '/images/a.jpeg', '../a', 'images/../../a', 'images//a', 'a/./b', 'a\0']


def run(coroutine):
    return asyncio.run(coroutine)


async def collect(iterator):
    return [item async for item in iterator]


async def read_all(body):
    if isinstance(body, bytes):
        return body
    return b''.join([chunk async for chunk in body])


@pytest.fixture(params=['local', pytest.param('s3', marks=pytest.mark.s3)])
def blobs(request, tmp_path):
    """Each backend, empty; reading big objects in chunks of CHUNK."""
    if request.param == 'local':
        backend = LocalBlobs(tmp_path / 'storage')
    else:
        server = request.getfixturevalue('seaweed_server')
        backend = open_blobs(request.getfixturevalue('bucket'), server.environ)
    backend.CHUNK = CHUNK
    return backend


def test_put_and_open_whole(blobs):
    async def scenario():
        await blobs.put('images/a.1.jpeg', b'0123456789')
        return await blobs.open('images/a.1.jpeg', whole_up_to=100)

    assert run(scenario()) == Found(10, b'0123456789')


def test_empty_object(blobs):
    async def scenario():
        await blobs.put('images/empty.jpeg', b'')
        return (
            await blobs.open('images/empty.jpeg', 0),
            await blobs.open('images/empty.jpeg', 0, 0, 10),
        )

    assert run(scenario()) == (Found(0, b''), Found(0, b''))


@pytest.mark.parametrize(
    ('start', 'end', 'expected'),
    [
        (3, None, b'3456789'),
        (2, 5, b'234'),
        (0, 10, b'0123456789'),
        (5, 50, b'56789'),
        (9, None, b'9'),
        (10, None, b''),
        (20, None, b''),
        (20, 30, b''),
        (4, 4, b''),
        (6, 2, b''),
    ],
)
def test_open_range(blobs, start, end, expected):
    async def scenario():
        await blobs.put('images/a.1.jpeg', b'0123456789')
        return await blobs.open('images/a.1.jpeg', 100, start, end)

    assert run(scenario()) == Found(10, expected)


def test_missing(blobs):
    async def scenario():
        await blobs.put('images/there.jpeg', b'x')
        return (
            await blobs.open('images/missing.jpeg', 100),
            await blobs.open('images/missing.jpeg', 100, 2, 5),
            await blobs.open('images/missing.jpeg', 100, 3, 3),
            await blobs.open('elsewhere/missing.jpeg', 100, 3),
            await blobs.size('images/missing.jpeg'),
        )

    assert run(scenario()) == (None, None, None, None, None)


def test_size(blobs):
    async def scenario():
        await blobs.put('thumbnails/a.1/8x8.jpeg', DATA)
        return await blobs.size('thumbnails/a.1/8x8.jpeg')

    assert run(scenario()) == len(DATA)


def test_big_object_streams_in_chunks(blobs):
    big = DATA * 7  # 2.1 MB

    async def scenario():
        await blobs.put('images/big.jpeg', big)
        found = await blobs.open('images/big.jpeg', whole_up_to=len(big) - 1)
        assert isinstance(found.body, Reader)
        assert found.size == found.body.length == len(big)
        chunks = [chunk async for chunk in found.body]
        # NOTE: Closed once read to the end: iterating again yields nothing.
        again = [chunk async for chunk in found.body]
        await found.body.close()
        return chunks, again

    chunks, again = run(scenario())
    assert b''.join(chunks) == big
    # NOTE: Bounded memory: a chunk at a time. The local backend reads CHUNK
    #   at a time; S3's chunks are at least CHUNK (bar the last), plus at most
    #   what one read from the socket brought, which hyper caps at about
    #   400 KiB (on a loaded machine a read brings more than CHUNK).
    assert all(len(chunk) >= CHUNK for chunk in chunks[:-1])
    assert max(len(chunk) for chunk in chunks) <= CHUNK + SOCKET_READ
    assert len(chunks) >= len(big) // (CHUNK + SOCKET_READ)
    assert again == []


def test_range_past_whole_up_to_streams(blobs):
    async def scenario():
        await blobs.put('images/big.jpeg', DATA)
        found = await blobs.open('images/big.jpeg', 1000, 100, 200_100)
        assert isinstance(found.body, Reader)
        assert (found.size, found.body.length) == (len(DATA), 200_000)
        return await read_all(found.body)

    assert run(scenario()) == DATA[100:200_100]


def test_reader_closed_early(blobs):
    async def scenario():
        await blobs.put('images/big.jpeg', DATA)
        found = await blobs.open('images/big.jpeg', 1000)
        first = await anext(found.body)
        await found.body.close()
        await found.body.close()
        with pytest.raises(StopAsyncIteration):
            await anext(found.body)
        return first

    first = run(scenario())
    assert first and DATA.startswith(first)


def test_replace(blobs):
    async def scenario():
        await blobs.put('images/a.jpeg', b'old bytes')
        await blobs.put('images/a.jpeg', b'new')
        return await blobs.open('images/a.jpeg', 100)

    assert run(scenario()) == Found(3, b'new')


def test_put_many(blobs):
    items = [(f'thumbnails/a.1/{n}x{n}.jpeg', bytes([n]) * n) for n in (8, 16, 32)]

    async def scenario():
        await blobs.put_many(items)
        return [await blobs.open(key, 100) for key, _ in items]

    assert run(scenario()) == [Found(len(data), data) for _, data in items]


def test_the_default_put_many_puts_each(blobs):
    items = [('images/a.jpeg', b'a'), ('images/b.jpeg', b'b')]

    async def scenario():
        await Blobs.put_many(blobs, iter(items))
        return [(item.key, item.size) for item in await collect(blobs.list())]

    assert sorted(run(scenario())) == [('images/a.jpeg', 1), ('images/b.jpeg', 1)]


def test_create_many(blobs):
    items = [('images/a.1.jpeg', b'jpeg'), ('images/a.1.original', b'png')]

    async def scenario():
        await blobs.create_many(items)
        return [await blobs.open(key, 100) for key, _ in items]

    assert run(scenario()) == [Found(len(data), data) for _, data in items]


def test_delete(blobs):
    async def scenario():
        await blobs.put('images/a.jpeg', b'a')
        await blobs.put('images/b.jpeg', b'b')
        await blobs.delete(['images/a.jpeg', 'images/never.jpeg'])
        await blobs.delete([])
        await blobs.delete(['thumbnails/a/1x1.jpeg'])
        return (
            await blobs.open('images/a.jpeg', 100),
            await blobs.open('images/b.jpeg', 100),
        )

    assert run(scenario()) == (None, Found(1, b'b'))


def test_delete_prefix(blobs):
    blobs.DELETE_BATCH = 2
    keys = [
        'thumbnails/a.1/8x8.jpeg',
        'thumbnails/a.1/16x16.jpeg',
        'thumbnails/a.1/16x16.webp',
        'thumbnails/a.1/more/32x32.jpeg',
        'thumbnails/a.10/8x8.jpeg',
        'images/a.1.jpeg',
    ]

    async def scenario():
        await blobs.put_many((key, b'x') for key in keys)
        await blobs.delete_prefix('thumbnails/a.1/')
        await blobs.delete_prefix('thumbnails/never/')
        await blobs.delete_prefix('images/a.1.jpeg/')
        return sorted(item.key for item in await collect(blobs.list()))

    assert run(scenario()) == ['images/a.1.jpeg', 'thumbnails/a.10/8x8.jpeg']
    with pytest.raises(ValueError, match='needs a prefix'):
        run(blobs.delete_prefix(''))


def test_list_by_prefix_in_pages(blobs):
    blobs.PAGE = 3
    images = [f'images/{n}.1.jpeg' for n in range(7)]
    thumbnails = ['thumbnails/0.1/8x8.jpeg', 'thumbnails/0.1/16x16.jpeg']
    before = time.time()

    async def scenario():
        await blobs.put_many((key, key.encode()) for key in images + thumbnails)
        return {
            prefix: await collect(blobs.list(prefix))
            for prefix in ('', 'images/', 'images', 'thumbnails/0.1/', 'none/')
        }

    listed = run(scenario())
    assert sorted(item.key for item in listed['images/']) == sorted(images)
    assert sorted(item.key for item in listed['images']) == sorted(images)
    assert sorted(item.key for item in listed['']) == sorted(images + thumbnails)
    assert sorted(item.key for item in listed['thumbnails/0.1/']) == sorted(thumbnails)
    assert listed['none/'] == []
    for item in listed['']:
        assert item.size == len(item.key)
        # NOTE: S3 keeps whole seconds.
        assert before - 2 <= item.modified <= time.time() + 2


def test_a_listing_stopped_early(blobs):
    blobs.PAGE = 1

    async def scenario():
        await blobs.put_many((f'images/{n}.jpeg', b'x') for n in range(3))
        listing = blobs.list('images/')
        first = await anext(listing)
        await listing.aclose()
        return first

    assert run(scenario()).key.startswith('images/')


@pytest.mark.parametrize('key', BAD_KEYS)
def test_bad_keys_are_refused(blobs, key):
    with pytest.raises(ValueError, match='Not a storage key'):
        run(blobs.put(key, b'x'))
    with pytest.raises(ValueError, match='Not a storage key'):
        run(blobs.open(key, 100))
    with pytest.raises(ValueError, match='Not a storage key'):
        run(blobs.delete(['images/fine.jpeg', key]))
    if key:
        with pytest.raises(ValueError, match='Not a storage key'):
            run(collect(blobs.list(key)))


def test_probe(blobs):
    async def scenario():
        said = await blobs.probe()
        return said, await collect(blobs.list())

    said, listed = run(scenario())
    if isinstance(blobs, LocalBlobs):
        assert re.fullmatch(r'writable, \d+\.\d GiB free', said)
    else:
        assert said == f'bucket {blobs.url} writable'
    assert listed == []
    run(blobs.close())


# The local directory.


@pytest.fixture
def disk(tmp_path):
    return LocalBlobs(tmp_path / 'storage')


def test_local_layout_is_todays(disk, tmp_path):
    root = tmp_path / 'storage'
    run(disk.put('images/a.1.jpeg', b'original'))
    run(disk.put_many([('thumbnails/a.1/8x8.jpeg', b'thumbnail')]))
    assert (root / 'images' / 'a.1.jpeg').read_bytes() == b'original'
    assert (root / 'thumbnails' / 'a.1' / '8x8.jpeg').read_bytes() == b'thumbnail'
    assert disk.url == str(root)
    assert open_blobs(str(root), {}).root == root


def test_local_lists_no_index_nor_partial_files(disk, tmp_path):
    root = tmp_path / 'storage'
    run(disk.put('images/a.1.jpeg', b'original'))
    for name in ('index.sqlite3', 'index.sqlite3-wal', 'index.sqlite3.lock'):
        (root / name).write_bytes(b'index')
    (root / 'images' / '.b.1.jpeg.0a1b2c3d.partial').write_bytes(b'half')
    (root / 'images' / 'link.jpeg').symlink_to(root / 'images' / 'a.1.jpeg')
    listed = run(collect(disk.list()))
    assert [item.key for item in listed] == ['images/a.1.jpeg']
    assert run(collect(disk.list('images/a.1.jpeg'))) == []


def test_local_keys_cannot_escape_the_root(disk, tmp_path):
    for key in ('../outside', 'images/../../outside', '/tmp/outside'):
        with pytest.raises(ValueError):
            disk.path(key)
        with pytest.raises(ValueError):
            run(disk.put(key, b'x'))
    with pytest.raises(ValueError):
        run(disk.delete_prefix('../'))
    assert not (tmp_path / 'outside').exists()


def test_local_only_files_are_objects(disk, tmp_path):
    run(disk.put('images/a.1.jpeg', b'original'))
    assert run(disk.open('images', 100)) is None
    assert run(disk.open('images/a.1.jpeg/more', 100)) is None
    assert run(disk.size('images')) is None
    run(disk.delete(['images', 'images/a.1.jpeg/more']))
    assert run(disk.size('images/a.1.jpeg')) == 8


def test_local_deleted_file_stays_readable_while_open(disk):
    async def scenario():
        await disk.put('images/big.jpeg', DATA)
        found = await disk.open('images/big.jpeg', 1000)
        await disk.delete(['images/big.jpeg'])
        await disk.delete_prefix('images/')
        assert await disk.open('images/big.jpeg', 1000) is None
        return await read_all(found.body)

    assert run(scenario()) == DATA


def test_local_file_cut_short_ends_the_reader(disk, tmp_path):
    disk.CHUNK = CHUNK

    async def scenario():
        await disk.put('images/big.jpeg', DATA)
        found = await disk.open('images/big.jpeg', 1000)
        os.truncate(tmp_path / 'storage' / 'images' / 'big.jpeg', CHUNK + 10)
        return await read_all(found.body)

    assert run(scenario()) == DATA[: CHUNK + 10]


def test_local_read_error_closes_the_reader(disk, monkeypatch):
    disk.CHUNK = CHUNK

    def failing(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def scenario():
        await disk.put('images/big.jpeg', DATA)
        found = await disk.open('images/big.jpeg', 1000)
        await anext(found.body)
        monkeypatch.setattr(os, 'pread', failing)
        with pytest.raises(StorageUnavailable, match='Input/output error'):
            await anext(found.body)
        return found.body

    reader = run(scenario())
    assert reader._fd is None


@pytest.mark.parametrize(
    ('code', 'error'),
    [
        (errno.EIO, StorageUnavailable),
        (errno.ENOSPC, StorageFull),
        (errno.EDQUOT, StorageFull),
    ],
)
def test_local_failed_write_leaves_no_partial_file(
    disk, tmp_path, monkeypatch, code, error
):
    run(disk.put('images/a.jpeg', b'old'))

    def failing(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, 'fsync', failing)
    with pytest.raises(error) as raised:
        run(disk.put('images/a.jpeg', b'new'))
    monkeypatch.undo()
    if error is StorageFull:
        assert str(raised.value) == FULL
    else:
        assert 'Input/output error' in str(raised.value)
    assert os.listdir(tmp_path / 'storage' / 'images') == ['a.jpeg']
    assert run(disk.open('images/a.jpeg', 100)) == Found(3, b'old')


def test_local_create_many_refuses_a_file_that_exists(disk, tmp_path):
    run(disk.put('images/a.jpeg', b'old'))
    with pytest.raises(StorageUnavailable, match='File exists'):
        run(disk.create_many([('images/a.jpeg', b'new')]))
    # NOTE: The file there is someone else's: it stays, whole.
    assert os.listdir(tmp_path / 'storage' / 'images') == ['a.jpeg']
    assert run(disk.open('images/a.jpeg', 100)) == Found(3, b'old')


@pytest.mark.parametrize('code', [errno.EIO, errno.ENOSPC])
def test_local_failed_create_leaves_nothing(disk, tmp_path, monkeypatch, code):
    run(disk.put('images/b.jpeg', b'other'))
    written = []

    def failing(fd):
        written.append(os.fstat(fd).st_size)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, 'fsync', failing)
    with pytest.raises(StorageFull if code == errno.ENOSPC else StorageUnavailable):
        run(disk.create_many([('images/a.jpeg', b'new'), ('images/c.jpeg', b'c')]))
    monkeypatch.undo()
    # Written in place, then removed when it could not be synced.
    assert written == [3]
    assert os.listdir(tmp_path / 'storage' / 'images') == ['b.jpeg']


def test_local_put_many_syncs_each_directory_once(disk, tmp_path, monkeypatch):
    synced = collections.Counter()
    sync = local._fsync_directory

    def counting(path):
        synced[path] += 1
        sync(path)

    monkeypatch.setattr(local, '_fsync_directory', counting)
    root = tmp_path / 'storage'
    run(disk.put_many((f'thumbnails/a.1/{n}x{n}.jpeg', b'x') for n in (8, 16, 32)))
    # NOTE: The new directories' entries too, up to the one that was there.
    assert synced == {
        tmp_path: 1,
        root: 1,
        root / 'thumbnails': 1,
        root / 'thumbnails' / 'a.1': 1,
    }
    synced.clear()
    run(disk.put_many([('thumbnails/a.1/64x64.jpeg', b'x')]))
    assert synced == {root / 'thumbnails' / 'a.1': 1}


def test_local_listing_skips_what_goes_away(disk, tmp_path):
    disk.PAGE = 1
    root = tmp_path / 'storage'
    keys = [f'thumbnails/{n}.1/8x8.jpeg' for n in range(4)]
    keys += [f'thumbnails/{n}.1/16x16.jpeg' for n in range(4)]

    async def scenario():
        await disk.put_many((key, b'x') for key in keys)
        listing = disk.list('thumbnails/')
        first = await anext(listing)
        # NOTE: The directories' entries are read already: what is removed
        #   now is met as gone, a file or a whole directory.
        folder = first.key.rsplit('/', 1)[0]
        for key in keys:
            if key != first.key:
                os.unlink(root / key)
        for name in os.listdir(root / 'thumbnails'):
            if f'thumbnails/{name}' != folder:
                os.rmdir(root / 'thumbnails' / name)
        return [first] + [item async for item in listing]

    listed = run(scenario())
    assert len(listed) == 1
    assert (root / listed[0].key).exists()


def test_local_probe_of_a_directory_that_cannot_be(tmp_path):
    (tmp_path / 'file').write_bytes(b'')
    blobs = LocalBlobs(tmp_path / 'file' / 'storage')
    with pytest.raises(StorageUnavailable, match='Not a directory'):
        run(blobs.probe())


def test_storage_error():
    assert isinstance(storage_error(OSError(errno.EDQUOT, 'quota')), StorageFull)
    error = storage_error(OSError('no errno'))
    assert isinstance(error, StorageUnavailable)
    assert str(error) == (
        'The image store cannot be used right now (OSError); try again later.'
    )


# S3.


def test_open_blobs_parses_s3_urls():
    environ = {'AWS_ENDPOINT_URL': 'https://s3.example.com'}
    blobs = open_blobs('s3://pictures', environ)
    assert (blobs.bucket, blobs.prefix, blobs.url) == ('pictures', '', 's3://pictures')
    blobs = open_blobs('S3://pictures/site/one/', environ)
    assert (blobs.bucket, blobs.prefix, blobs.url) == (
        'pictures',
        'site/one',
        's3://pictures/site/one',
    )


@pytest.mark.parametrize(
    ('url', 'message'),
    [
        ('', 'is empty'),
        ('s3://', 'names a bucket'),
        ('s3:///prefix', 'names a bucket'),
        ('s3://KEY:hunter2@pictures/site', 'names a bucket'),
        ('s3://pictures:9000/site', 'names a bucket'),
        ('s3://pictures/site?region=eu', 'no query'),
        ('s3://pictures/site#x', 'no query'),
        ('s3://pictures/a//b', 'Not a storage key'),
        ('gs://pictures', "scheme 'gs://'"),
        ('https://s3.example.com/pictures', "scheme 'https://'"),
    ],
)
def test_open_blobs_refuses(url, message):
    with pytest.raises(ValueError, match=message) as raised:
        open_blobs(url, {})
    assert 'hunter2' not in str(raised.value)


def test_s3_blobs_refuses_bad_buckets():
    for bucket in ('', 'a/b'):
        with pytest.raises(ValueError, match='Not a bucket name'):
            S3Blobs(bucket, '', {})


def test_s3_config():
    assert s3_config({}) == {'region': 'us-east-1'}
    assert s3_config(
        {
            'AWS_DEFAULT_REGION': 'eu-west-3',
            'AWS_ACCESS_KEY_ID': 'key',
            'AWS_SECRET_ACCESS_KEY': 'secret',
            'AWS_SESSION_TOKEN': 'token',
            'AWS_ENDPOINT_URL': 'http://127.0.0.1:8333',
        }
    ) == {
        'region': 'eu-west-3',
        'access_key_id': 'key',
        'secret_access_key': 'secret',
        'session_token': 'token',
        'endpoint': 'http://127.0.0.1:8333',
        'virtual_hosted_style_request': False,
    }
    assert s3_config({'AWS_REGION': 'eu-north-1', 'AWS_ACCESS_KEY_ID': ''}) == {
        'region': 'eu-north-1'
    }
    for endpoint in ('not a url', 'ftp://host', 'http://'):
        with pytest.raises(ValueError, match='AWS_ENDPOINT_URL'):
            s3_config({'AWS_ENDPOINT_URL': endpoint})


@pytest.mark.parametrize(
    ('text', 'reason'),
    [
        ('... <Code>SlowDown</Code> ...', 'S3 error SlowDown'),
        ('<Code>SignatureDoesNotMatch</Code>', 'the secret key was refused'),
        ('non-2xx status code: 503 Service Unavailable', 'S3 error 503'),
        ('non-2xx status code: 403 Forbidden', 'access denied'),
        ('ConnectError(... ConnectionRefused ...)', 'connection refused'),
        ('ConnectError("dns error", ...)', 'unknown host'),
        ('HttpError { kind: Timeout }', 'timed out'),
        ('HTTP error: error sending request', 'connection failed'),
        ('something else', 'RuntimeError'),
    ],
)
def test_s3_errors_are_unavailable(text, reason):
    error = s3_error(RuntimeError(text))
    assert isinstance(error, StorageUnavailable)
    assert str(error) == (
        f'The image store cannot be used right now ({reason}); try again later.'
    )


@pytest.mark.parametrize(
    'text',
    [
        '<Code>QuotaExceeded</Code>',
        '<Code>EntityTooLarge</Code>',
        'non-2xx status code: 507 Insufficient Storage',
    ],
)
def test_s3_errors_that_mean_full(text):
    error = s3_error(RuntimeError(text))
    assert isinstance(error, StorageFull)
    assert str(error) == FULL


@pytest.mark.s3
def test_s3_layout(seaweed_server, bucket):
    blobs = open_blobs(bucket, seaweed_server.environ)
    prefix = blobs.prefix
    run(blobs.put('images/a.1.jpeg', b'original'))
    status, body = seaweed_server.request(
        'GET', f'/{seaweed_server.bucket}/{prefix}/images/a.1.jpeg'
    )
    assert (status, body) == (200, b'original')


@pytest.mark.s3
def test_s3_wrong_secret_is_refused(seaweed_server, bucket):
    wrong = 'wrong-' + seaweed_server.secret_key[::-1]
    environ = dict(seaweed_server.environ, AWS_SECRET_ACCESS_KEY=wrong)
    blobs = open_blobs(bucket, environ)
    attempts = [
        lambda: blobs.put('images/a.jpeg', b'x'),
        lambda: blobs.open('images/a.jpeg', 100),
        lambda: blobs.size('images/a.jpeg'),
        lambda: blobs.delete(['images/a.jpeg']),
        lambda: collect(blobs.list()),
        lambda: blobs.probe(),
    ]
    for attempt in attempts:
        with pytest.raises(StorageUnavailable) as raised:
            run(attempt())
        message = str(raised.value)
        assert re.fullmatch(
            r'The image store cannot be used right now \(.+\); try again later\.',
            message,
        )
        assert wrong not in message
        assert seaweed_server.secret_key not in message
        assert seaweed_server.access_key not in message


@pytest.mark.s3
def test_s3_unknown_access_key_is_refused(seaweed_server, bucket):
    environ = dict(seaweed_server.environ, AWS_ACCESS_KEY_ID='nobody')
    with pytest.raises(StorageUnavailable, match='the access key is unknown'):
        run(open_blobs(bucket, environ).put('images/a.jpeg', b'x'))


@pytest.mark.s3
def test_s3_missing_bucket(seaweed_server):
    blobs = S3Blobs('no-such-bucket', '', seaweed_server.environ)
    with pytest.raises(StorageUnavailable, match='there is no such bucket'):
        run(blobs.open('images/a.jpeg', 100))
    with pytest.raises(StorageUnavailable, match='there is no such bucket'):
        run(collect(blobs.list()))
    # NOTE: The answer to a HEAD has no body to tell a bucket from a key.
    assert run(blobs.size('images/a.jpeg')) is None


@pytest.mark.s3
def test_s3_store_going_away_and_coming_back(seaweed_server, bucket):
    """Stopped: every call fails (at once: the port is closed), a reader too.

    Started again on the same port: the same client works, and what was
    written is there.
    """
    blobs = open_blobs(bucket, seaweed_server.environ)
    big = os.urandom(16 * 1024 * 1024)
    run(blobs.put('images/big.jpeg', big))
    run(blobs.put('images/a.jpeg', b'a'))

    async def interrupted():
        found = await blobs.open('images/big.jpeg', 1000)
        await anext(found.body)
        seaweed_server.stop()
        return await read_all(found.body)

    try:
        with pytest.raises(StorageUnavailable):
            run(interrupted())
        for attempt in (
            lambda: blobs.put('images/b.jpeg', b'b'),
            lambda: blobs.put('images/c.jpeg', os.urandom(blobs.SMALL + 1)),
            lambda: blobs.put_many([('images/d.jpeg', b'd'), ('images/e.jpeg', b'e')]),
            lambda: blobs.open('images/a.jpeg', 100),
            lambda: blobs.open('images/a.jpeg', 100, 1),
            lambda: blobs.size('images/a.jpeg'),
            lambda: blobs.delete(['images/a.jpeg']),
            lambda: blobs.delete_prefix('images/'),
            lambda: collect(blobs.list()),
            lambda: blobs.probe(),
        ):
            with pytest.raises(StorageUnavailable, match='connection refused'):
                run(attempt())
    finally:
        seaweed_server.start()
    assert run(blobs.open('images/a.jpeg', 100)) == Found(1, b'a')
    run(blobs.put('images/c.jpeg', big))
    assert run(read_all(run(blobs.open('images/c.jpeg', 10**9)).body)) == big


class QuickS3Blobs(S3Blobs):
    READ_TIMEOUT = datetime.timedelta(milliseconds=500)
    MAX_RETRIES = 0


@pytest.mark.s3
def test_s3_store_that_hangs(seaweed_server, bucket):
    """Paused (it takes connections, and never answers): every call times out."""
    blobs = QuickS3Blobs(
        seaweed_server.bucket, bucket.rsplit('/', 1)[1], seaweed_server.environ
    )
    run(blobs.put('images/a.jpeg', b'a'))
    seaweed_server.pause()
    try:
        for attempt in (
            lambda: blobs.open('images/a.jpeg', 100),
            lambda: blobs.put('images/b.jpeg', b'b'),
            lambda: collect(blobs.list()),
        ):
            with pytest.raises(StorageUnavailable, match='timed out'):
                run(attempt())
    finally:
        seaweed_server.resume()
    assert run(blobs.open('images/a.jpeg', 100)) == Found(1, b'a')

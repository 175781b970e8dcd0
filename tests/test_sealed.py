"""Encryption at rest over a backend (asgilook.storage.blobs.sealed).

Most tests run against an in-memory double of a backend that counts the
calls and the bytes fetched, and again against the real backends: a local
directory and a SeaweedFS bucket (S3).
"""

import asyncio
import io
import logging
import random
import threading

import PIL.Image
import pytest
from cryptography.exceptions import UnsupportedAlgorithm

from asgilook.errors import DamagedObject
from asgilook.storage import ciphers
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import Reader
from asgilook.storage.blobs import sealed as sealed_module
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.blobs.s3 import S3Blobs
from asgilook.storage.blobs.sealed import OFFLOAD_SIZE
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.blobs.sealed import sealed_size
from asgilook.storage.crypto import HEADER_SIZE
from asgilook.storage.crypto import SEGMENT_SIZE
from asgilook.storage.crypto import Header
from asgilook.storage.crypto import Keyring
from asgilook.storage.crypto import is_sealed
from asgilook.storage.crypto import rewrap
from asgilook.storage.crypto import seal

KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
NEW_KEY = bytes(range(200, 232))
NAME = 'images/0a1b.1.jpeg'
S = SEGMENT_SIZE
TAG = 16
LOGGER = 'asgilook.storage.blobs.sealed'


def run(coroutine):
    return asyncio.run(coroutine)


def plaintext(length, seed=0):
    return random.Random(seed).randbytes(length)


def jpeg_with_exif():
    exif = PIL.Image.Exif()
    exif[0x010F] = 'asgilook test camera'
    out = io.BytesIO()
    PIL.Image.effect_noise((96, 64), 40).convert('RGB').save(out, 'JPEG', exif=exif)
    return out.getvalue()


class ChunkReader(Reader):
    """A Reader of bytes in chunks of a fixed size, as a backend's."""

    def __init__(self, data, chunk, owner):
        self.length = len(data)
        # NOTE: The owner's ``cut`` makes it end early: a connection lost.
        self._data = data[: len(data) - owner.cut]
        self._chunk = chunk
        self._at = 0
        self._owner = owner
        self.closed = False
        owner.readers.append(self)

    async def __anext__(self):
        if self.closed or self._at >= len(self._data):
            await self.close()
            raise StopAsyncIteration
        chunk = self._data[self._at : self._at + self._chunk]
        self._at += len(chunk)
        self._owner.fetched += len(chunk)
        return chunk

    async def close(self):
        self.closed = True


class MemoryBlobs(Blobs):
    """A backend in a dict; counts calls and the bytes fetched.

    ``then`` holds functions called after the next opens, one each, to change
    the store between two reads of one call (another process at work).
    """

    url = 'memory:'

    def __init__(self, chunk=10_000, streams=False):
        self.objects = {}
        self.chunk = chunk
        # NOTE: True: a Reader even of a few bytes, as a backend may give.
        self.streams = streams
        self.cut = 0
        self.calls = []
        self.fetched = 0
        self.readers = []
        self.then = []
        self.closed = 0

    def opens(self):
        return [call for call in self.calls if call[0] == 'open']

    async def put(self, key, data):
        self.calls.append(('put', key))
        self.objects[key] = bytes(data)

    async def open(self, key, whole_up_to, start=0, end=None):
        self.calls.append(('open', key, whole_up_to, start, end))
        data = self.objects.get(key)
        if self.then:
            self.then.pop(0)()
        if data is None:
            return None
        part = data[start : len(data) if end is None else min(end, len(data))]
        if len(part) <= whole_up_to and not self.streams:
            self.fetched += len(part)
            return Found(len(data), part)
        return Found(len(data), ChunkReader(part, self.chunk, self))

    async def size(self, key):
        data = self.objects.get(key)
        return None if data is None else len(data)

    async def delete(self, keys):
        for key in keys:
            self.objects.pop(key, None)

    async def delete_prefix(self, prefix):
        for key in [key for key in self.objects if key.startswith(prefix)]:
            del self.objects[key]

    async def list(self, prefix=''):
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield Listed(key, len(self.objects[key]), 0.0)

    async def probe(self):
        return 'a dict'

    async def close(self):
        self.closed += 1


@pytest.fixture(params=['memory', 'local', 's3'])
def inner(request, tmp_path):
    """A backend to wrap: the double, a local directory, a SeaweedFS bucket."""
    if request.param == 'memory':
        return MemoryBlobs()
    if request.param == 'local':
        return LocalBlobs(tmp_path / 'blobs')
    url = request.getfixturevalue('bucket')
    bucket, prefix = url.removeprefix('s3://').split('/', 1)
    return S3Blobs(bucket, prefix, request.getfixturevalue('seaweed_server').environ)


async def stored(inner, key):
    """The bytes the backend holds for ``key``."""
    found = await inner.open(key, 1 << 40)
    body = found.body
    if isinstance(body, bytes):
        return body
    return b''.join([chunk async for chunk in body])


async def body_bytes(found):
    if isinstance(found.body, bytes):
        return found.body
    chunks = [chunk async for chunk in found.body]
    assert all(chunks), 'a Reader yielded an empty chunk'
    return b''.join(chunks)


async def read(blobs, key, whole_up_to, start=0, end=None):
    """(size, bytes, was it whole) of a read through ``blobs``."""
    found = await blobs.open(key, whole_up_to, start, end)
    whole = isinstance(found.body, bytes)
    data = await body_bytes(found)
    if not whole:
        assert found.body.length == len(data)
    return found.size, data, whole


def ours(caplog):
    return [record for record in caplog.records if record.name == LOGGER]


def damaged_logs(caplog, key):
    return [
        record
        for record in caplog.records
        if record.name == LOGGER
        and record.levelno == logging.ERROR
        and f'object {key} failed authentication' in record.getMessage()
    ]


# Whole reads


@pytest.mark.parametrize('length', [0, 1, 1000, S - 1, S, S + 1, 3 * S + 77])
def test_whole_reads_give_the_plaintext_small_and_streamed(inner, length):
    data = plaintext(length, length)
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        await blobs.put(NAME, data)
        small = await read(blobs, NAME, 1 << 30)
        streamed = await read(blobs, NAME, max(length - 1, 0))
        return small, streamed

    small, streamed = run(scenario())
    assert small == (length, data, True)
    assert streamed == (length, data, length == 0)


def test_big_streamed_chunks_are_decrypted_off_the_loop_and_sent_as_bytes(
    monkeypatch,
):
    chunk = sealed_module.THREAD_CHUNK
    inner = MemoryBlobs(chunk=chunk)
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(2 * chunk + 5000)
    run(blobs.put(NAME, data))
    threads = []
    feed = sealed_module.Decryptor.feed

    def noting(decryptor, given):
        threads.append((len(given), threading.get_ident()))
        return feed(decryptor, given)

    monkeypatch.setattr(sealed_module.Decryptor, 'feed', noting)

    async def scenario():
        loop = threading.get_ident()
        found = await blobs.open(NAME, 0)
        return loop, [piece async for piece in found.body]

    loop, pieces = run(scenario())
    assert b''.join(pieces) == data
    # NOTE: ASGI servers take a body of bytes only (falcon.testing checks).
    assert {type(piece) for piece in pieces} == {bytes}
    for size, thread in threads:
        assert (thread != loop) == (size >= chunk), threads
    assert any(thread != loop for _, thread in threads)
    assert any(thread == loop for _, thread in threads)


def test_a_whole_read_is_one_inner_read_of_the_object_and_its_overhead():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(3 * S + 5)
    run(blobs.put(NAME, data))
    for whole_up_to in (1 << 30, 1000):
        inner.calls.clear()
        inner.fetched = 0
        assert run(read(blobs, NAME, whole_up_to))[1] == data
        assert inner.opens() == [('open', NAME, sealed_size(whole_up_to), 0, None)]
        assert inner.fetched == len(inner.objects[NAME])


def test_the_overhead_allowed_is_the_formats():
    assert sealed_size(0) == HEADER_SIZE + TAG
    assert sealed_size(S) == HEADER_SIZE + S + TAG
    assert sealed_size(S + 1) == HEADER_SIZE + S + 1 + 2 * TAG
    assert sealed_size(10, segment_size=4) == HEADER_SIZE + 10 + 3 * TAG


@pytest.mark.parametrize('chunk', [1, 7, 16, 32, 33, HEADER_SIZE, 500])
def test_a_stream_decrypts_whatever_the_inner_chunks(chunk):
    inner = MemoryBlobs(chunk=chunk)
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(200)
    inner.objects[NAME] = seal(Keyring(KEY), NAME, data, segment_size=16)

    async def scenario():
        found = await blobs.open(NAME, 0)
        assert found.size == found.body.length == 200
        chunks = [chunk async for chunk in found.body]
        # NOTE: A segment is given out whole as soon as it is complete.
        assert all(len(chunk) % 16 == 0 for chunk in chunks[:-1])
        return b''.join(chunks)

    assert run(scenario()) == data
    assert all(reader.closed for reader in inner.readers)


def test_an_object_within_whole_up_to_comes_whole_whatever_its_overhead():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(500)
    # NOTE: Segments of 16 bytes double the object: more than the allowance.
    inner.objects[NAME] = seal(Keyring(KEY), NAME, data, segment_size=16)
    assert run(read(blobs, NAME, 500)) == (500, data, True)
    assert inner.readers and all(reader.closed for reader in inner.readers)


def test_a_plain_object_above_whole_up_to_comes_as_a_reader():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(1050)
    inner.objects[NAME] = data

    async def scenario():
        found = await blobs.open(NAME, 1000)
        assert isinstance(found.body, Reader)
        assert found.body.length == found.size == 1050
        chunks = [chunk async for chunk in found.body]
        assert [chunk async for chunk in found.body] == []
        await found.body.close()
        return chunks

    assert run(scenario()) == [data]
    # NOTE: The inner backend gave it whole (within the allowance).
    assert not inner.readers


def test_closing_a_stream_early_closes_the_inner_reader():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))

    async def scenario():
        found = await blobs.open(NAME, 0)
        first = await found.body.__anext__()
        await found.body.close()
        await found.body.close()
        rest = [chunk async for chunk in found.body]
        return first, rest

    first, rest = run(scenario())
    assert first == plaintext(3 * S)[:S]
    assert rest == []
    assert [reader.closed for reader in inner.readers] == [True]


# Ranges


def ranges(length):
    """Ranges at, around and across segment boundaries, and the ends."""
    ends = [None, length]
    for n in range(length // S + 1):
        ends += [n * S - 1, n * S, n * S + 1]
    points = sorted({p for p in ends if p is not None and 0 <= p <= length})
    pairs = [(0, 1), (0, length), (length - 1, None), (length, None)]
    for start in points:
        pairs += [(start, end) for end in ends if end is None or end > start]
    return sorted(set(pairs), key=lambda pair: (pair[0], pair[1] or length + 1))


LENGTH = 4 * S + 1234


@pytest.mark.parametrize('whole', [True, False], ids=['whole', 'streamed'])
def test_ranges_give_the_plaintext_of_the_range(inner, whole):
    data = plaintext(LENGTH)
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        await blobs.put(NAME, data)
        for start, end in ranges(LENGTH):
            expected = data[start:end]
            whole_up_to = len(expected) if whole else max(len(expected) - 1, 0)
            size, got, was_whole = await read(blobs, NAME, whole_up_to, start, end)
            assert (size, was_whole) == (LENGTH, whole or not expected), (start, end)
            assert got == expected, (start, end)

    run(scenario())


def test_every_range_of_a_small_segmented_object():
    inner = MemoryBlobs(chunk=5)
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(50)
    inner.objects[NAME] = seal(Keyring(KEY), NAME, data, segment_size=7)

    async def scenario():
        for start in range(51):
            for end in range(start, 51):
                for whole_up_to in (end - start, 0):
                    found = await blobs.open(NAME, whole_up_to, start, end)
                    assert await body_bytes(found) == data[start:end], (start, end)

    run(scenario())


def test_a_range_is_two_inner_reads_fetching_only_its_segments():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(LENGTH)
    run(blobs.put(NAME, data))
    header = Header.parse(inner.objects[NAME], NAME)
    for start, end in [(S + 5, 3 * S - 5), (S, 2 * S), (0, 10), (4 * S, None)]:
        for whole_up_to in (1 << 30, 0):
            inner.calls.clear()
            inner.fetched = 0
            found = run(blobs.open(NAME, whole_up_to, start, end))
            assert run(body_bytes(found)) == data[start:end]
            offset, stop = header.span(start, LENGTH if end is None else end)
            assert inner.opens() == [
                ('open', NAME, HEADER_SIZE, 0, HEADER_SIZE),
                ('open', NAME, stop - offset if whole_up_to else 0, offset, stop),
            ]
            assert inner.fetched == HEADER_SIZE + stop - offset
            assert stop - offset <= (end or LENGTH) - start + 2 * (S + TAG)


def test_an_empty_range_within_a_sealed_object_reads_its_header_only():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))
    inner.calls.clear()
    assert run(read(blobs, NAME, 100, S, S)) == (3 * S, b'', True)
    assert len(inner.opens()) == 1


def test_a_range_past_the_end_is_clamped_to_the_plaintext():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(1000)
    run(blobs.put(NAME, data))
    assert run(read(blobs, NAME, 10_000, 990, 5000)) == (1000, data[990:], True)
    assert run(read(blobs, NAME, 10_000, 2000, 5000)) == (1000, b'', True)


def test_an_empty_sealed_object(inner):
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        await blobs.put(NAME, b'')
        assert len(await stored(inner, NAME)) == sealed_size(0)
        assert await read(blobs, NAME, 0) == (0, b'', True)
        assert await read(blobs, NAME, 0, 0, 0) == (0, b'', True)
        assert await blobs.size(NAME) == 0

    run(scenario())


# Plain objects, written before encryption was turned on


@pytest.mark.parametrize('writer', [None, Keyring(None, [KEY])], ids=['off', 'old'])
def test_plain_objects_read_the_same_once_encryption_is_on(inner, writer):
    data = jpeg_with_exif() + plaintext(2 * S)
    before = SealedBlobs(inner, writer)
    after = SealedBlobs(inner, Keyring(NEW_KEY, [KEY]))
    assert not before.encrypts and after.encrypts

    async def scenario():
        await before.put(NAME, data)
        assert await stored(inner, NAME) == data
        length = len(data)
        assert await read(after, NAME, 1 << 30) == (length, data, True)
        assert await read(after, NAME, 100) == (length, data, False)
        assert await read(after, NAME, 0, 10, S + 10) == (
            length,
            data[10 : S + 10],
            False,
        )
        assert await read(after, NAME, 1 << 30, S) == (length, data[S:], True)
        assert await after.size(NAME) == length

    run(scenario())


def test_a_plain_range_is_the_inner_range():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(5000)
    inner.objects[NAME] = data
    assert run(read(blobs, NAME, 1 << 30, 100, 200)) == (5000, data[100:200], True)
    assert inner.opens() == [
        ('open', NAME, HEADER_SIZE, 0, HEADER_SIZE),
        ('open', NAME, 1 << 30, 100, 200),
    ]


@pytest.mark.parametrize('streams', [False, True])
def test_an_object_shorter_than_a_header_reads_as_plain(streams):
    inner = MemoryBlobs(chunk=3, streams=streams)
    blobs = SealedBlobs(inner, Keyring(KEY))
    inner.objects[NAME] = b'GIF89a'
    assert run(read(blobs, NAME, 0)) == (6, b'GIF89a', False)
    assert run(read(blobs, NAME, 0, 2, 4)) == (6, b'F8', False)
    assert run(blobs.size(NAME)) == 6


def test_writing_without_a_current_key_stores_plain_bytes():
    inner = MemoryBlobs()
    run(SealedBlobs(inner, None).put_many([('a', b'one'), ('b', b'two')]))
    run(SealedBlobs(inner, Keyring(None, [KEY])).put('c', b'three'))
    assert inner.objects == {'a': b'one', 'b': b'two', 'c': b'three'}


# Refusals


def test_a_sealed_object_without_a_keyring_is_refused_and_logged(inner, caplog):
    data = plaintext(3 * S)
    run(SealedBlobs(inner, Keyring(KEY)).put(NAME, data))
    blobs = SealedBlobs(inner, None)
    attempts = [
        lambda: blobs.open(NAME, 1 << 30),
        lambda: blobs.open(NAME, 0),
        lambda: blobs.open(NAME, 1 << 30, 5, 10),
        lambda: blobs.open(NAME, 0, 5, 2 * S),
        lambda: blobs.size(NAME),
    ]
    for attempt in attempts:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            with pytest.raises(DamagedObject, match='no key with that id'):
                run(attempt())
        assert len(damaged_logs(caplog, NAME)) == 1
        assert len(ours(caplog)) == 1


def test_a_sealed_object_of_an_unknown_key_is_refused():
    inner = MemoryBlobs()
    run(SealedBlobs(inner, Keyring(OLD_KEY)).put(NAME, b'picture'))
    for whole_up_to in (100, 0):
        with pytest.raises(DamagedObject, match='no key with that id'):
            run(SealedBlobs(inner, Keyring(KEY)).open(NAME, whole_up_to))
    # NOTE: The object came whole, then as a Reader, closed at the refusal.
    assert [reader.closed for reader in inner.readers] == [True]


def test_a_damaged_byte_mid_stream_stops_at_its_segment(inner, caplog):
    data = plaintext(5 * S)
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        await blobs.put(NAME, data)
        damaged = bytearray(await stored(inner, NAME))
        damaged[HEADER_SIZE + 2 * (S + TAG) + 100] ^= 1
        await inner.put(NAME, bytes(damaged))
        found = await blobs.open(NAME, 0)
        got = []
        with pytest.raises(DamagedObject, match='segment 2 of 5 fails'):
            async for chunk in found.body:
                got.append(chunk)
        assert [chunk async for chunk in found.body] == []
        return b''.join(got)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        got = run(scenario())
    assert got == data[: len(got)]
    assert len(got) <= 2 * S
    if isinstance(inner, MemoryBlobs):
        assert len(got) == 2 * S
        assert all(reader.closed for reader in inner.readers)
    assert len(damaged_logs(caplog, NAME)) == 1
    assert len(ours(caplog)) == 1


def test_a_damaged_range_is_refused():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))
    damaged = bytearray(inner.objects[NAME])
    damaged[HEADER_SIZE + S + TAG + 1] ^= 0x80
    inner.objects[NAME] = bytes(damaged)
    assert run(read(blobs, NAME, 1 << 30, 0, S)) == (3 * S, plaintext(3 * S)[:S], True)
    with pytest.raises(DamagedObject, match='segment 1 of 3'):
        run(blobs.open(NAME, 1 << 30, S, S + 1))


@pytest.mark.parametrize(
    'keep',
    [
        lambda n: n - 1,
        lambda n: n - TAG - 100,
        lambda n: HEADER_SIZE + 2 * (S + TAG),
        lambda n: HEADER_SIZE + 100,
        lambda n: HEADER_SIZE,
        lambda n: HEADER_SIZE - 5,
    ],
    ids=['byte', 'last-segment', 'at-a-boundary', 'mid-segment', 'header', 'in-header'],
)
def test_a_truncated_object_is_refused(inner, keep, caplog):
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(3 * S + 100)

    async def scenario():
        await blobs.put(NAME, data)
        whole = await stored(inner, NAME)
        await inner.put(NAME, whole[: keep(len(whole))])
        # NOTE: Refused by open() itself, streamed too: before a byte is sent.
        for attempt in [
            lambda: blobs.open(NAME, 1 << 30),
            lambda: blobs.open(NAME, 0),
            lambda: blobs.open(NAME, 1 << 30, 0, 10),
            lambda: blobs.open(NAME, 0, 2 * S, None),
            lambda: blobs.size(NAME),
        ]:
            caplog.clear()
            with pytest.raises(DamagedObject, match='truncated|bytes long'):
                await attempt()
            assert len(damaged_logs(caplog, NAME)) == 1

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        run(scenario())
    if isinstance(inner, MemoryBlobs):
        assert all(reader.closed for reader in inner.readers)


def test_a_stream_that_ends_early_is_refused_at_its_end(caplog):
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    data = plaintext(3 * S)
    run(blobs.put(NAME, data))
    inner.cut = TAG

    async def scenario():
        found = await blobs.open(NAME, 0)
        got = []
        with pytest.raises(DamagedObject, match='truncated at segment 2 of 3'):
            async for chunk in found.body:
                got.append(chunk)
        return b''.join(got)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(scenario()) == data[: 2 * S]
    assert len(damaged_logs(caplog, NAME)) == 1
    assert [reader.closed for reader in inner.readers] == [True]


def test_a_header_cut_short_is_refused_from_a_backend_that_streams_all():
    inner = MemoryBlobs(chunk=4, streams=True)
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, b'picture'))
    inner.objects[NAME] = inner.objects[NAME][:50]
    for whole_up_to in (1 << 30, 0):
        with pytest.raises(DamagedObject, match='inside its 105-byte header'):
            run(blobs.open(NAME, whole_up_to))
    assert all(reader.closed for reader in inner.readers)


def test_swapped_objects_are_refused(inner, caplog):
    blobs = SealedBlobs(inner, Keyring(KEY))
    other = 'images/ffff.1.jpeg'

    async def scenario():
        await blobs.put(NAME, plaintext(2 * S, 1))
        await blobs.put(other, plaintext(2 * S, 2))
        first, second = await stored(inner, NAME), await stored(inner, other)
        await inner.put(NAME, second)
        await inner.put(other, first)
        for key in (NAME, other):
            for whole_up_to, start, end in [
                (1 << 30, 0, None),
                (0, 0, None),
                (0, S, S + 1),
            ]:
                with pytest.raises(DamagedObject, match='another name'):
                    await blobs.open(key, whole_up_to, start, end)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        run(scenario())
    assert len(damaged_logs(caplog, NAME)) == len(damaged_logs(caplog, other)) == 3


def test_an_object_replaced_between_two_reads_of_a_range_is_refused():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))
    longer = seal(Keyring(KEY), NAME, plaintext(4 * S))

    def replace():
        inner.objects[NAME] = longer

    for whole_up_to in (1 << 30, 0):
        run(blobs.put(NAME, plaintext(3 * S)))
        inner.then = [replace]
        with pytest.raises(DamagedObject, match='bytes long'):
            run(blobs.open(NAME, whole_up_to, S, 2 * S))
    assert [reader.closed for reader in inner.readers] == [True]


def test_an_object_deleted_between_two_reads_of_a_range_is_missing():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))
    inner.then = [lambda: inner.objects.clear()]
    assert run(blobs.open(NAME, 0, S, 2 * S)) is None


def test_missing_objects(inner):
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        assert await blobs.open('images/none.jpeg', 100) is None
        assert await blobs.open('images/none.jpeg', 0) is None
        assert await blobs.open('images/none.jpeg', 100, 5, 10) is None
        assert await blobs.size('images/none.jpeg') is None
        assert await blobs.reseal('images/none.jpeg') == 'missing'

    run(scenario())


# Keys and their rotation


def test_objects_of_old_keys_read(inner):
    data = plaintext(2 * S + 3)
    run(SealedBlobs(inner, Keyring(OLD_KEY)).put(NAME, data))
    blobs = SealedBlobs(inner, Keyring(KEY, [NEW_KEY, OLD_KEY]))
    assert run(read(blobs, NAME, 1 << 30)) == (len(data), data, True)
    assert run(read(blobs, NAME, 0, S, None)) == (len(data), data[S:], False)
    # NOTE: Old keys alone open objects; with no current key, nothing is sealed.
    readonly = SealedBlobs(inner, Keyring(None, [OLD_KEY]))
    assert run(read(readonly, NAME, 1 << 30)) == (len(data), data, True)


def test_reseal_outcomes_and_the_objects_read_with_the_new_key_only(inner):
    old = SealedBlobs(inner, Keyring(OLD_KEY))
    rotating = SealedBlobs(inner, Keyring(NEW_KEY, [OLD_KEY]))
    new_only = SealedBlobs(inner, Keyring(NEW_KEY))
    objects = {f'images/{n}.1.jpeg': plaintext(S + 10 * n, n) for n in range(5)}
    a, b, c, d, e = objects

    async def scenario():
        for key in (a, b, c):
            await old.put(key, objects[key])
        await SealedBlobs(inner, None).put(d, objects[d])
        await rotating.put(e, objects[e])
        before = {key: await stored(inner, key) for key in objects}
        outcomes = {
            a: await rotating.reseal(a),
            b: await rotating.reseal(b, reencrypt=True),
            c: await rotating.reseal(c),
            d: await rotating.reseal(d),
            e: await rotating.reseal(e),
        }
        after = {key: await stored(inner, key) for key in objects}
        for key, data in objects.items():
            assert await read(new_only, key, 1 << 30) == (len(data), data, True)
            assert await read(new_only, key, 0, 5, S + 5) == (
                len(data),
                data[5 : S + 5],
                False,
            )
        again = {key: await rotating.reseal(key) for key in objects}
        return before, outcomes, after, again

    before, outcomes, after, again = run(scenario())
    assert outcomes == {
        a: 'rewrapped',
        b: 'reencrypted',
        c: 'rewrapped',
        d: 'sealed',
        e: 'current',
    }
    assert set(again.values()) == {'current'}
    # NOTE: A rewrap keeps the segments; a re-encryption makes new ones.
    assert after[a][HEADER_SIZE:] == before[a][HEADER_SIZE:]
    assert after[a][:HEADER_SIZE] != before[a][:HEADER_SIZE]
    assert after[b][HEADER_SIZE:] != before[b][HEADER_SIZE:]
    assert after[e] == before[e]
    assert not is_sealed(before[d]) and is_sealed(after[d])


def test_reseal_of_a_current_object_reads_its_header_only():
    inner = MemoryBlobs()
    blobs = SealedBlobs(inner, Keyring(KEY))
    run(blobs.put(NAME, plaintext(3 * S)))
    inner.calls.clear()
    assert run(blobs.reseal(NAME)) == 'current'
    assert inner.calls == [('open', NAME, HEADER_SIZE, 0, HEADER_SIZE)]
    inner.calls.clear()
    assert run(blobs.reseal(NAME, reencrypt=True)) == 'reencrypted'
    assert [call[0] for call in inner.calls] == ['open', 'open', 'put']


def test_reseal_of_an_object_deleted_meanwhile_is_missing():
    inner = MemoryBlobs()
    run(SealedBlobs(inner, Keyring(OLD_KEY)).put(NAME, b'picture'))
    inner.then = [lambda: inner.objects.clear()]
    assert run(SealedBlobs(inner, Keyring(KEY, [OLD_KEY])).reseal(NAME)) == 'missing'
    assert inner.objects == {}


def test_reseal_of_an_object_rewrapped_meanwhile_rewraps_it_again():
    inner = MemoryBlobs()
    old = Keyring(OLD_KEY)
    rotating = Keyring(KEY, [OLD_KEY])
    run(SealedBlobs(inner, old).put(NAME, b'picture'))
    other = SealedBlobs(inner, rotating)

    def rewrapped_by_another_process():
        before = inner.objects[NAME]
        inner.objects[NAME] = rewrap(rotating, NAME, before) + before[HEADER_SIZE:]

    inner.then = [rewrapped_by_another_process]
    assert run(other.reseal(NAME)) == 'rewrapped'
    assert run(read(SealedBlobs(inner, Keyring(KEY)), NAME, 100)) == (
        7,
        b'picture',
        True,
    )


def test_reseal_needs_a_current_key():
    inner = MemoryBlobs()
    inner.objects[NAME] = b'picture'
    for keyring in (None, Keyring(None, [KEY])):
        with pytest.raises(ValueError, match='ASGI_LOOK_ENCRYPTION_KEY'):
            run(SealedBlobs(inner, keyring).reseal(NAME))
    assert inner.objects[NAME] == b'picture'


def test_reseal_refuses_an_object_it_cannot_open(caplog):
    inner = MemoryBlobs()
    run(SealedBlobs(inner, Keyring(OLD_KEY)).put(NAME, b'picture'))
    before = dict(inner.objects)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        with pytest.raises(DamagedObject):
            run(SealedBlobs(inner, Keyring(KEY)).reseal(NAME, reencrypt=True))
    assert len(damaged_logs(caplog, NAME)) == 1
    assert inner.objects == before


# Format versions


def version_of(stored_bytes):
    return Header.parse(stored_bytes, NAME).version


def test_version_1_objects_read_and_reseal_into_version_2(inner):
    data = plaintext(3 * S + 77)
    blobs = SealedBlobs(inner, Keyring(NEW_KEY, [OLD_KEY]))

    async def scenario():
        await inner.put(NAME, seal(Keyring(OLD_KEY), NAME, data, version=1))
        reads = [
            await read(blobs, NAME, 1 << 30),
            await read(blobs, NAME, 0),
            await read(blobs, NAME, 0, S - 5, 2 * S + 5),
        ]
        outcomes = [await blobs.reseal(NAME)]
        rewrapped = await stored(inner, NAME)
        outcomes.append(await blobs.reseal(NAME, reencrypt=True))
        reencrypted = await stored(inner, NAME)
        reads.append(await read(SealedBlobs(inner, Keyring(NEW_KEY)), NAME, 0))
        return reads, outcomes, rewrapped, reencrypted

    reads, outcomes, rewrapped, reencrypted = run(scenario())
    assert reads[0] == (len(data), data, True)
    assert reads[1] == (len(data), data, False)
    assert reads[2] == (len(data), data[S - 5 : 2 * S + 5], False)
    assert reads[3] == (len(data), data, False)
    assert outcomes == ['rewrapped', 'reencrypted']
    # NOTE: A rewrap keeps the segments, so their version; rekey --reencrypt
    #   writes them anew in version 2.
    assert version_of(rewrapped) == 1
    assert version_of(reencrypted) == 2


def test_new_objects_are_version_2():
    inner = MemoryBlobs()
    run(SealedBlobs(inner, Keyring(KEY)).put(NAME, b'picture'))
    assert version_of(inner.objects[NAME]) == 2


class NoOCB:
    """AESOCB3 of a cryptography built on LibreSSL or BoringSSL."""

    def __init__(self, key):
        raise UnsupportedAlgorithm('AES-OCB3 is not supported by this backend.')


@pytest.fixture
def lose_ocb(monkeypatch):
    """Call it to take AES-OCB3 away from the library, as such builds lack it."""

    def lose():
        monkeypatch.setattr(ciphers, 'AESOCB3', NoOCB)
        ciphers.sealing_version.cache_clear()

    yield lose
    # NOTE: Before monkeypatch puts AESOCB3 back: the next call probes anew.
    ciphers.sealing_version.cache_clear()


def test_without_ocb_version_2_is_refused_and_logged_yet_rotates(
    lose_ocb, monkeypatch, caplog
):
    inner = MemoryBlobs(chunk=S // 3)
    data = plaintext(2 * S + 9)
    run(SealedBlobs(inner, Keyring(OLD_KEY)).put(NAME, data))
    assert version_of(inner.objects[NAME]) == 2
    lose_ocb()
    blobs = SealedBlobs(inner, Keyring(KEY, [OLD_KEY]))

    async def refusals():
        for whole_up_to, start, end in [(1 << 30, 0, None), (0, 0, None), (0, 5, 9)]:
            with pytest.raises(DamagedObject, match='AES-256-OCB3') as raised:
                await read(blobs, NAME, whole_up_to, start, end)
            assert 'does not have' in str(raised.value)
        # NOTE: Its header opens without OCB3: its size, and a rotation.
        return await blobs.size(NAME), await blobs.reseal(NAME)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        size, outcome = run(refusals())
    assert len(damaged_logs(caplog, NAME)) == 3
    assert (size, outcome) == (len(data), 'rewrapped')
    assert version_of(inner.objects[NAME]) == 2
    with pytest.raises(DamagedObject, match='AES-256-OCB3'):
        run(blobs.reseal(NAME, reencrypt=True))
    # NOTE: New objects are version 1 meanwhile, and read.
    run(blobs.put('images/new.jpeg', data))
    assert Header.parse(inner.objects['images/new.jpeg'], NAME).version == 1
    assert run(read(blobs, 'images/new.jpeg', 0)) == (len(data), data, False)
    ciphers.sealing_version.cache_clear()
    monkeypatch.undo()
    assert run(read(SealedBlobs(inner, Keyring(KEY)), NAME, 0))[1] == data


# Sizes, listing and the rest


def test_size_is_the_plaintext_length_from_one_small_read(inner):
    blobs = SealedBlobs(inner, Keyring(KEY))

    async def scenario():
        await blobs.put('images/sealed.jpeg', plaintext(2 * S + 7))
        await SealedBlobs(inner, None).put('images/plain.jpeg', plaintext(3000))
        return await blobs.size('images/sealed.jpeg'), await blobs.size(
            'images/plain.jpeg'
        )

    assert run(scenario()) == (2 * S + 7, 3000)
    if isinstance(inner, MemoryBlobs):
        assert inner.fetched == 2 * HEADER_SIZE


def test_listing_shows_stored_sizes_and_the_rest_passes_through(inner):
    blobs = SealedBlobs(inner, Keyring(KEY))
    assert blobs.url == inner.url

    async def scenario():
        await blobs.put_many(
            [('images/a.1.jpeg', plaintext(100)), ('thumbnails/a.1/8x8.jpeg', b'x')]
        )
        await blobs.put('thumbnails/a.1/16x16.jpeg', b'yy')
        listed = {item.key: item.size async for item in blobs.list('thumbnails/')}
        assert listed == {
            'thumbnails/a.1/8x8.jpeg': sealed_size(1),
            'thumbnails/a.1/16x16.jpeg': sealed_size(2),
        }
        await blobs.delete(['images/a.1.jpeg', 'images/none.jpeg'])
        assert await blobs.size('images/a.1.jpeg') is None
        await blobs.delete_prefix('thumbnails/a.1/')
        assert [item async for item in blobs.list()] == []
        assert isinstance(await blobs.probe(), str)
        await blobs.close()

    run(scenario())
    if isinstance(inner, MemoryBlobs):
        assert inner.closed == 1


def test_nothing_of_a_picture_is_stored_in_the_clear(inner):
    picture = jpeg_with_exif()
    assert picture.startswith(b'\xff\xd8\xff') and b'Exif\x00\x00' in picture
    blobs = SealedBlobs(inner, Keyring(KEY))
    keys = ['images/a.1.jpeg', 'thumbnails/a.1/8x8.jpeg', 'thumbnails/a.1/9x9.jpeg']

    async def scenario():
        await blobs.put(keys[0], picture)
        await blobs.put_many([(key, picture) for key in keys[1:]])
        listed = [item.key async for item in inner.list()]
        return listed, [await stored(inner, key) for key in listed]

    listed, objects = run(scenario())
    assert sorted(listed) == sorted(keys)
    pieces = [picture[i : i + 12] for i in range(0, len(picture) - 12, 6)]
    for data in objects:
        assert is_sealed(data) and not data.startswith(b'\xff\xd8')
        assert b'Exif' not in data and b'JFIF' not in data
        assert not [piece for piece in pieces if piece in data]
    for key in keys:
        assert run(read(blobs, key, 1 << 30)) == (len(picture), picture, True)


def test_large_objects_are_sealed_and_opened_off_the_event_loop(monkeypatch):
    inner = MemoryBlobs(chunk=1 << 20)
    blobs = SealedBlobs(inner, Keyring(KEY))
    offloaded = []
    for name in ('seal', 'unseal', '_decrypt'):
        original = getattr(sealed_module, name)

        def spy(*args, _original=original, **kwargs):
            offloaded.append(threading.current_thread() is not threading.main_thread())
            return _original(*args, **kwargs)

        monkeypatch.setattr(sealed_module, name, spy)
    big = plaintext(OFFLOAD_SIZE + S)

    async def scenario():
        await blobs.put(NAME, big)
        await blobs.put('small', b'small')
        assert await read(blobs, NAME, 1 << 30) == (len(big), big, True)
        assert await read(blobs, NAME, 1 << 30, 1, None) == (len(big), big[1:], True)
        assert await read(blobs, 'small', 1 << 30, 1, None) == (5, b'mall', True)

    run(scenario())
    # NOTE: seal (big, small), unseal (big), decrypt a range (big, small).
    assert offloaded == [True, False, True, True, False]

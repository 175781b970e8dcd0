"""Encryption at rest: the sealed format (asgilook.storage.crypto).

The tests of the format run for both versions (the ``version`` fixture):
1, segments in AES-256-GCM, and 2, in AES-256-OCB3.
"""

import base64
import io
import logging
import random
import struct

import PIL.Image
import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3

from asgilook.errors import DamagedObject
from asgilook.storage import ciphers
from asgilook.storage import crypto
from asgilook.storage.crypto import HEADER_SIZE
from asgilook.storage.crypto import Decryptor
from asgilook.storage.crypto import Header
from asgilook.storage.crypto import Keyring
from asgilook.storage.crypto import is_sealed
from asgilook.storage.crypto import needs_rewrap
from asgilook.storage.crypto import rewrap
from asgilook.storage.crypto import seal
from asgilook.storage.crypto import unseal
from asgilook.storage.crypto import unseal_range

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
NEW_KEY = bytes(range(200, 232))
NAME = 'images/0a1b.1.jpeg'
# NOTE: A small segment size keeps the exhaustive tests fast.
S = 16
TAG = 16
#: The cipher of the segments of each version, as the docstring documents.
AEADS = {1: AESGCM, 2: AESOCB3}


@pytest.fixture(params=[1, 2], ids=['v1-gcm', 'v2-ocb3'])
def version(request):
    return request.param


def plaintext(length, seed=0):
    return random.Random(seed).randbytes(length)


def sealed_segments(sealed):
    """The ciphertext segments of an object sealed with segment size S."""
    header = Header.parse(sealed, NAME)
    body = sealed[HEADER_SIZE:]
    step = header.segment_size + TAG
    return [body[i : i + step] for i in range(0, len(body), step)] or [b'']


def refused(sealed, name=NAME, keyring=None):
    """The message of the DamagedObject that unsealing ``sealed`` raises."""
    with pytest.raises(DamagedObject) as raised:
        unseal(keyring or Keyring(KEY), name, sealed)
    assert repr(name) in str(raised.value)
    return str(raised.value)


def unwrap_by_hand(sealed, key=KEY, name=NAME):
    """The data key of ``sealed``, read as the module docstring documents."""
    fixed = sealed[:37]
    key_id, nonce, wrapped = sealed[37:45], sealed[45:57], sealed[57:105]
    return AESGCM(key).decrypt(nonce, wrapped, fixed + key_id + name.encode())


def rewrap_by_hand(fixed, data_key, key=KEY, name=NAME):
    """A header for ``fixed`` and ``data_key``, written as documented."""
    key_id = crypto.key_id(key)
    nonce = bytes(12)
    associated = fixed + key_id + name.encode()
    return fixed + key_id + nonce + AESGCM(key).encrypt(nonce, data_key, associated)


def nonce(index, last):
    return index.to_bytes(11, 'big') + (b'\x01' if last else b'\x00')


@pytest.mark.parametrize('length', [0, 1, S - 1, S, S + 1, 2 * S, 3 * S + 5])
def test_round_trip_around_segment_boundaries(length, version):
    data = plaintext(length)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    assert unseal(Keyring(KEY), NAME, sealed) == data
    assert is_sealed(sealed)
    assert header.plain_length == length
    assert header.version == sealed[8] == version
    assert header.segment_count == max(1, -(-length // S))
    assert len(sealed) == header.sealed_length
    assert len(sealed) == HEADER_SIZE + length + TAG * header.segment_count


def test_round_trip_with_the_real_segment_size(version):
    data = plaintext(3 * crypto.SEGMENT_SIZE + 5)
    sealed = seal(Keyring(KEY), NAME, data, version=version)
    header = Header.parse(sealed, NAME)
    assert crypto.SEGMENT_SIZE == 64 * 1024
    assert header.segment_size == crypto.SEGMENT_SIZE
    assert header.segment_count == 4
    assert unseal(Keyring(KEY), NAME, sealed) == data


def test_the_format_is_the_documented_layout(version):
    data = plaintext(2 * S + 3)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    magic, stored, size, length, _ = struct.unpack('>8sBIQ16s', sealed[:37])
    assert (magic, stored, size, length) == (b'\x00ALKSEAL', version, S, len(data))
    assert HEADER_SIZE == 105
    assert sealed[37:45] == crypto.key_id(KEY)
    aead = AEADS[version](unwrap_by_hand(sealed))
    body = sealed[HEADER_SIZE:]
    segments = [body[0:32], body[32:64], body[64:]]
    flags = [False, False, True]
    opened = [
        aead.decrypt(nonce(i, last), segment, sealed[:37])
        for i, (segment, last) in enumerate(zip(segments, flags, strict=True))
    ]
    assert b''.join(opened) == data


def test_key_ids_are_not_the_key():
    identity = crypto.key_id(KEY)
    assert len(identity) == 8
    assert identity not in KEY
    assert identity != crypto.key_id(OTHER_KEY)


def test_sealing_twice_gives_different_objects(version):
    data = plaintext(40)
    first = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    second = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    assert first[:21] == second[:21]
    assert first[21:37] != second[21:37]
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]


def test_every_range_reads_exactly_its_plaintext_from_its_segments_only(version):
    data = plaintext(3 * S + 5)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    data_key = header.open(Keyring(KEY))
    for start in range(len(data) + 1):
        for end in range(start, len(data) + 1):
            offset, stop = header.span(start, end)
            decryptor = Decryptor(header, data_key, start, end)
            assert decryptor.feed(sealed[offset:stop]) == data[start:end]
            decryptor.finish()
            touched = -(-end // S) - start // S if start < end else 0
            if end == len(data):
                touched = max(touched, 1)
            assert stop - offset <= touched * (S + TAG)
            assert HEADER_SIZE <= offset <= stop <= len(sealed)


def test_an_empty_range_needs_no_segment_unless_it_is_at_the_end(version):
    data = plaintext(3 * S)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    offset, stop = header.span(S + 3, S + 3)
    assert offset == stop == HEADER_SIZE + S + TAG
    assert header.span(len(data), len(data)) == (
        HEADER_SIZE + 2 * (S + TAG),
        len(sealed),
    )


def test_unseal_range_reads_a_range(version):
    data = plaintext(5 * S + 7)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed[:HEADER_SIZE], NAME)
    offset, stop = header.span(S + 3, 3 * S + 1)
    ciphertext = sealed[offset:stop]
    assert len(ciphertext) == 3 * (S + TAG)
    assert (
        unseal_range(Keyring(KEY), header, ciphertext, S + 3, 3 * S + 1)
        == (data[S + 3 : 3 * S + 1])
    )


def test_the_empty_object_verifies_its_one_segment(version):
    sealed = seal(Keyring(KEY), NAME, b'', segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    assert header.span(0, 0) == (HEADER_SIZE, HEADER_SIZE + TAG)
    damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(DamagedObject, match='segment 0 of 1'):
        unseal_range(Keyring(KEY), header, damaged[HEADER_SIZE:], 0, 0)


@pytest.mark.parametrize('chunk', [1, 2, 7, S, S + TAG - 1, S + TAG, S + TAG + 1, 100])
def test_the_decryptor_takes_chunks_of_any_size(chunk, version):
    data = plaintext(4 * S + 9)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    for start, end in [(0, len(data)), (S - 1, 2 * S + 1), (5, 6)]:
        offset, stop = header.span(start, end)
        decryptor = Decryptor(header, header.open(Keyring(KEY)), start, end)
        pieces = [
            decryptor.feed(memoryview(sealed)[i : min(i + chunk, stop)])
            for i in range(offset, stop, chunk)
        ]
        decryptor.finish()
        assert b''.join(pieces) == data[start:end]


def test_the_decryptor_returns_each_segment_as_soon_as_it_is_complete(version):
    data = plaintext(3 * S)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    decryptor = Decryptor(header, header.open(Keyring(KEY)))
    body = sealed[HEADER_SIZE:]
    assert decryptor.feed(body[: S + TAG - 1]) == b''
    assert decryptor.feed(body[S + TAG - 1 : S + TAG + 1]) == data[:S]
    assert decryptor.feed(body[S + TAG + 1 :]) == data[S:]
    decryptor.finish()


@pytest.mark.parametrize(
    ('start', 'end'), [(-1, 0), (3, 2), (0, 3 * S + 6), (3 * S + 6, 3 * S + 6)]
)
def test_a_range_outside_the_plaintext_is_an_error(start, end, version):
    sealed = seal(
        Keyring(KEY), NAME, plaintext(3 * S + 5), segment_size=S, version=version
    )
    header = Header.parse(sealed, NAME)
    with pytest.raises(ValueError, match='is not a range of the 53 bytes'):
        header.span(start, end)
    with pytest.raises(ValueError, match='is not a range'):
        Decryptor(header, header.open(Keyring(KEY)), start, end)


def test_truncation_anywhere_is_refused(version):
    sealed = seal(
        Keyring(KEY), NAME, plaintext(3 * S + 5), segment_size=S, version=version
    )
    for length in range(len(sealed)):
        refused(sealed[:length])


def test_a_stream_that_stops_early_is_refused_at_finish(version):
    data = plaintext(3 * S + 5)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    for length in range(HEADER_SIZE, len(sealed)):
        decryptor = Decryptor(header, header.open(Keyring(KEY)))
        plain = decryptor.feed(sealed[HEADER_SIZE:length])
        assert data.startswith(plain)
        with pytest.raises(DamagedObject, match='is truncated at segment'):
            decryptor.finish()


def test_bytes_after_the_span_are_refused(version):
    data = plaintext(3 * S + 5)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    offset, stop = header.span(0, S)
    decryptor = Decryptor(header, header.open(Keyring(KEY)), 0, S)
    with pytest.raises(DamagedObject, match='bytes follow its last segment'):
        decryptor.feed(sealed[offset : stop + 1])
    decryptor = Decryptor(header, header.open(Keyring(KEY)))
    with pytest.raises(DamagedObject, match='bytes follow its last segment'):
        decryptor.feed(sealed[HEADER_SIZE:] + b'\x00')


def test_an_object_of_another_size_than_its_header_says_is_refused(version):
    sealed = seal(Keyring(KEY), NAME, plaintext(3 * S), segment_size=S, version=version)
    header = Header.parse(sealed, NAME)
    header.check_size(len(sealed))
    with pytest.raises(
        DamagedObject, match='it is 202 bytes long, and its header says 201'
    ):
        header.check_size(len(sealed) + 1)
    assert 'its header says' in refused(sealed + b'\x00')


def test_dropped_duplicated_or_reordered_segments_are_refused(version):
    data = plaintext(4 * S)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    head = sealed[:HEADER_SIZE]
    a, b, c, d = sealed_segments(sealed)
    header = Header.parse(sealed, NAME)
    for segments in [
        [a, c, b, d],
        [b, a, c, d],
        [a, b, d, c],
        [a, b, b, d],
        [a, a, c, d],
        [a, b, c, c],
        [d, b, c, a],
    ]:
        # NOTE: The same size: the counter refuses them, not the size.
        assert 'fails authentication' in refused(head + b''.join(segments))
    for segments in [[a, b, c], [a, c, d], [b, c, d], [a, b, b, c, d]]:
        refused(head + b''.join(segments))
        decryptor = Decryptor(header, header.open(Keyring(KEY)))
        with pytest.raises(DamagedObject):
            decryptor.feed(b''.join(segments))
            decryptor.finish()


def test_a_last_segment_not_flagged_last_is_refused(version):
    data = plaintext(3 * S)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    fixed = sealed[:37]
    aead = AEADS[version](unwrap_by_hand(sealed))
    last = data[2 * S :]
    for flag, readable in [(True, True), (False, False)]:
        forged = sealed[: -(S + TAG)] + aead.encrypt(nonce(2, flag), last, fixed)
        if readable:
            assert unseal(Keyring(KEY), NAME, forged) == data
        else:
            assert 'segment 2 of 3 fails' in refused(forged)


def test_truncation_with_a_forged_length_is_refused_by_the_last_flag(version):
    # NOTE: Only the holder of the key can forge the length; even then the
    #   second segment, not flagged last, gives the truncation away.
    data = plaintext(3 * S)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    fixed = bytearray(sealed[:37])
    fixed[13:21] = (2 * S).to_bytes(8, 'big')
    header = rewrap_by_hand(bytes(fixed), unwrap_by_hand(sealed))
    forged = header + sealed[HEADER_SIZE : HEADER_SIZE + 2 * (S + TAG)]
    assert Header.parse(forged, NAME).open(Keyring(KEY))
    assert 'segment 0 of 2 fails' in refused(forged)


def test_a_flipped_bit_anywhere_is_refused(version):
    sealed = seal(Keyring(KEY), NAME, plaintext(S + 4), segment_size=S, version=version)
    for position in range(len(sealed)):
        for bit in range(8):
            damaged = bytearray(sealed)
            damaged[position] ^= 1 << bit
            refused(bytes(damaged))


def test_an_object_stored_under_another_name_is_refused(version):
    data = plaintext(2 * S)
    first = seal(Keyring(KEY), 'images/a.1.jpeg', data, segment_size=S, version=version)
    second = seal(
        Keyring(KEY), 'images/b.1.jpeg', data, segment_size=S, version=version
    )
    assert unseal(Keyring(KEY), 'images/a.1.jpeg', first) == data
    message = refused(first, name='images/b.1.jpeg')
    assert 'the object of another name' in message
    refused(second, name='images/a.1.jpeg')


def test_a_header_of_another_object_of_the_same_name_is_refused(version):
    first = seal(
        Keyring(KEY), NAME, plaintext(2 * S, 1), segment_size=S, version=version
    )
    second = seal(
        Keyring(KEY), NAME, plaintext(2 * S, 2), segment_size=S, version=version
    )
    refused(first[:HEADER_SIZE] + second[HEADER_SIZE:])
    refused(first[:37] + second[37:])
    refused(second[:37] + first[37:HEADER_SIZE] + second[HEADER_SIZE:])


@pytest.mark.parametrize('keyring', [None, Keyring(OTHER_KEY), Keyring(None, [])])
def test_without_its_key_an_object_is_refused_naming_it(keyring, version):
    sealed = seal(Keyring(KEY), NAME, plaintext(10), segment_size=S, version=version)
    with pytest.raises(DamagedObject) as raised:
        unseal(keyring, NAME, sealed)
    message = str(raised.value)
    assert repr(NAME) in message
    assert f'key id {crypto.key_id(KEY).hex()}' in message
    assert 'no key with that id is configured' in message


def test_old_keys_still_open_objects(version):
    data = plaintext(2 * S + 1)
    sealed = seal(Keyring(OTHER_KEY), NAME, data, segment_size=S, version=version)
    keyring = Keyring(KEY, [OTHER_KEY])
    assert unseal(keyring, NAME, sealed) == data
    assert unseal(Keyring(None, [OTHER_KEY]), NAME, sealed) == data
    resealed = seal(keyring, NAME, data, segment_size=S, version=version)
    assert Header.parse(resealed, NAME).key_id == crypto.key_id(KEY)


def test_rewrap_moves_an_object_to_the_current_key(version):
    data = plaintext(3 * S + 2)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    rotating = Keyring(NEW_KEY, [KEY])
    assert needs_rewrap(rotating, Header.parse(sealed, NAME))
    header = rewrap(rotating, NAME, sealed[:HEADER_SIZE])
    assert len(header) == HEADER_SIZE
    # NOTE: The fixed part, the version of the segments kept included.
    assert header[:37] == sealed[:37]
    assert header[8] == version
    rewrapped = header + sealed[HEADER_SIZE:]
    assert not needs_rewrap(rotating, Header.parse(rewrapped, NAME))
    assert unseal(Keyring(NEW_KEY), NAME, rewrapped) == data
    message = refused(rewrapped, keyring=Keyring(None, [KEY]))
    assert 'no key with that id' in message


def test_needs_rewrap_is_false_without_a_current_key():
    sealed = seal(Keyring(KEY), NAME, b'', segment_size=S)
    header = Header.parse(sealed, NAME)
    assert not needs_rewrap(Keyring(None, [KEY]), header)
    assert not needs_rewrap(Keyring(KEY), header)
    assert needs_rewrap(Keyring(NEW_KEY), header)


def test_rewrap_can_move_an_object_to_another_name(version):
    data = plaintext(S + 1)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=version)
    moved = rewrap(Keyring(KEY), NAME, sealed, new_name='images/moved.jpeg')
    renamed = moved + sealed[HEADER_SIZE:]
    assert unseal(Keyring(KEY), 'images/moved.jpeg', renamed) == data
    refused(renamed)


def test_rewrap_needs_a_current_key_and_a_key_that_opens_the_object():
    sealed = seal(Keyring(KEY), NAME, plaintext(5), segment_size=S)
    with pytest.raises(ValueError, match='ASGI_LOOK_ENCRYPTION_KEY is not set'):
        rewrap(Keyring(None, [KEY]), NAME, sealed)
    with pytest.raises(DamagedObject, match='no key with that id'):
        rewrap(Keyring(NEW_KEY), NAME, sealed)


def jpeg_with_exif():
    image = PIL.Image.new('RGB', (320, 240))
    image.frombytes(random.Random(3).randbytes(320 * 240 * 3))
    exif = PIL.Image.Exif()
    exif[0x010F] = 'asgilook test camera, kitchen window'
    output = io.BytesIO()
    image.save(output, 'JPEG', exif=exif, quality=90)
    return output.getvalue()


def test_a_sealed_jpeg_shows_nothing_of_the_picture(version):
    data = jpeg_with_exif()
    assert data.startswith(b'\xff\xd8\xff')
    assert b'\xff\xe1\x00HExif\x00\x00' in data
    assert len(data) > crypto.SEGMENT_SIZE
    sealed = seal(Keyring(KEY), NAME, data, version=version)
    assert unseal(Keyring(KEY), NAME, sealed) == data
    assert not sealed.startswith(b'\xff\xd8')
    assert data[:4] not in sealed
    assert b'\xff\xe1\x00HExif' not in sealed
    assert b'Exif\x00\x00' not in sealed
    assert b'kitchen' not in sealed
    runs = {sealed[i : i + 16] for i in range(len(sealed) - 15)}
    assert not any(data[i : i + 16] in runs for i in range(len(data) - 15))


@pytest.mark.parametrize(
    'format', ['JPEG', 'PNG', 'WEBP', 'AVIF', 'GIF', 'TIFF', 'BMP']
)
def test_plain_pictures_are_not_taken_for_sealed_objects(format):
    output = io.BytesIO()
    PIL.Image.new('RGB', (32, 24), 'teal').save(output, format)
    data = output.getvalue()
    assert not is_sealed(data[:HEADER_SIZE])
    assert is_sealed(seal(Keyring(KEY), NAME, data)[:HEADER_SIZE])
    assert 'it is not a sealed object' in refused(data)


def test_a_truncated_magic_counts_as_sealed():
    assert not is_sealed(b'')
    for length in range(1, len(crypto.MAGIC) + 1):
        assert is_sealed(crypto.MAGIC[:length])
        assert f'truncated inside its {HEADER_SIZE}-byte header' in refused(
            crypto.MAGIC[:length]
        )
    assert not is_sealed(b'\x00\x00\x00\x1cftypavif')


@pytest.mark.parametrize(
    ('offset', 'value', 'message'),
    [
        (8, b'\x00', 'its format version 0 is not known'),
        (8, b'\x03', 'its format version 3 is not known'),
        (9, b'\x00\x00\x00\x00', 'its segment size 0 is impossible'),
        (9, b'\x01\x00\x00\x01', 'its segment size 16777217 is impossible'),
    ],
)
def test_an_unknown_version_or_segment_size_is_refused(offset, value, message):
    sealed = bytearray(seal(Keyring(KEY), NAME, plaintext(20), segment_size=S))
    sealed[offset : offset + len(value)] = value
    assert message in refused(bytes(sealed))


def test_new_objects_are_sealed_in_version_2():
    sealed = seal(Keyring(KEY), NAME, plaintext(20), segment_size=S)
    assert crypto.sealing_version() == crypto.VERSION == 2
    assert sealed[8] == 2
    assert Header.parse(sealed, NAME).version == 2
    assert unseal(Keyring(KEY), NAME, sealed) == plaintext(20)


# NOTE: Sealed by the code before version 2 existed (AES-256-GCM segments of
#   16 bytes, under KEY, as NAME): committed as it was written then.
V1_PLAINTEXT = b'a version 1 object, sealed by the code of 2026-12-07'
V1_OBJECT = bytes.fromhex(
    '00414c4b5345414c01000000100000000000000034fb1dd27ebe047aef4dc75bed2a5431'
    'd94b1987a9157c8aa9fe1176db1b6042682506f0cbc29fc61e3947635063e468ea92c20f'
    'b77bf5a8c822264c1e860a4b624c2045c6b538b5bb7148df214d8595d82d0d6ab84f70e7'
    '3dbafe9ae9047fa6b0ed42ba65da6ff16d130e4ca47095d6ad9410088237fbfc52ad8421'
    'e41bd58c8f451748e532e457fa774fcee6a62c4076a70ca5d0fa211dc4a053ca1dcda011'
    'e932cbfbcf74eeba46ebf4a9f6ab6945740a06009b6d6c8ea03cdec8f4f40f3641cac3d6'
    '09e465c609'
)


def test_a_version_1_object_of_the_earlier_code_still_opens():
    header = Header.parse(V1_OBJECT, NAME)
    assert header.version == 1
    assert unseal(Keyring(KEY), NAME, V1_OBJECT) == V1_PLAINTEXT
    offset, stop = header.span(20, 40)
    assert (
        unseal_range(Keyring(KEY), header, V1_OBJECT[offset:stop], 20, 40)
        == (V1_PLAINTEXT[20:40])
    )
    # NOTE: A rotation keeps it in version 1 (its segments are kept);
    #   re-encryption (unseal, seal) makes it version 2.
    rotating = Keyring(NEW_KEY, [KEY])
    rewrapped = rewrap(rotating, NAME, V1_OBJECT) + V1_OBJECT[HEADER_SIZE:]
    assert rewrapped[8] == 1
    assert unseal(Keyring(NEW_KEY), NAME, rewrapped) == V1_PLAINTEXT
    again = seal(rotating, NAME, unseal(rotating, NAME, V1_OBJECT))
    assert again[8] == 2
    assert unseal(Keyring(NEW_KEY), NAME, again) == V1_PLAINTEXT


@pytest.mark.parametrize(('written', 'forged'), [(2, 1), (1, 2)])
def test_an_object_is_never_read_as_another_version(written, forged):
    data = plaintext(3 * S + 1)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=written)
    relabelled = bytearray(sealed)
    relabelled[8] = forged
    assert 'its header fails authentication' in refused(bytes(relabelled))
    # NOTE: Even the holder of the key, wrapping the data key anew for the
    #   relabelled header, gets nothing: the segments fail.
    fixed = bytes(relabelled[:37])
    forged_header = rewrap_by_hand(fixed, unwrap_by_hand(sealed))
    assert 'segment 0 of 4 fails' in refused(forged_header + sealed[HEADER_SIZE:])


def test_seal_refuses_an_unknown_version():
    with pytest.raises(ValueError, match=r'format version 3 is not one of \(1, 2\)'):
        seal(Keyring(KEY), NAME, b'data', version=3)


class NoOCB:
    """AESOCB3 of a cryptography built on LibreSSL or BoringSSL."""

    def __init__(self, key):
        raise UnsupportedAlgorithm('AES-OCB3 is not supported by this backend.')


@pytest.fixture
def lose_ocb(monkeypatch):
    """Call it to take AES-OCB3 away from the library, as such builds lack it."""

    def lose():
        monkeypatch.setattr(ciphers, 'AESOCB3', NoOCB)
        crypto.sealing_version.cache_clear()

    yield lose
    # NOTE: Before monkeypatch puts AESOCB3 back: the next call probes anew.
    crypto.sealing_version.cache_clear()


def test_without_ocb_objects_are_sealed_in_version_1_said_once(lose_ocb, caplog):
    lose_ocb()
    with caplog.at_level(logging.WARNING, logger='asgilook.storage.ciphers'):
        first = seal(Keyring(KEY), NAME, plaintext(40), segment_size=S)
        second = seal(Keyring(KEY), NAME, plaintext(50))
    assert first[8] == second[8] == 1
    assert unseal(Keyring(KEY), NAME, first) == plaintext(40)
    assert unseal(Keyring(KEY), NAME, second) == plaintext(50)
    warnings = [r for r in caplog.records if r.name == 'asgilook.storage.ciphers']
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert 'no AES-OCB3' in warnings[0].getMessage()
    assert 'format version 1' in warnings[0].getMessage()


def test_without_ocb_a_version_2_object_is_refused_and_still_rewraps(
    lose_ocb, monkeypatch
):
    data = plaintext(2 * S + 3)
    sealed = seal(Keyring(KEY), NAME, data, segment_size=S, version=2)
    lose_ocb()
    message = refused(sealed)
    assert 'its segments are AES-256-OCB3 (format version 2)' in message
    assert 'the cryptography library of this process does not have' in message
    # NOTE: Its header opens (its size is known); its segments do not.
    header = Header.parse(sealed, NAME)
    data_key = header.open(Keyring(KEY))
    with pytest.raises(DamagedObject, match='AES-256-OCB3'):
        Decryptor(header, data_key)
    with pytest.raises(UnsupportedAlgorithm):
        seal(Keyring(KEY), NAME, data, version=2)
    # NOTE: Version 1 still opens; a rotation needs no OCB3 either.
    assert unseal(Keyring(KEY), NAME, V1_OBJECT) == V1_PLAINTEXT
    rotating = Keyring(NEW_KEY, [KEY])
    rewrapped = rewrap(rotating, NAME, sealed) + sealed[HEADER_SIZE:]
    assert rewrapped[8] == 2
    assert 'AES-256-OCB3' in refused(rewrapped, keyring=Keyring(NEW_KEY))
    monkeypatch.undo()
    assert unseal(Keyring(NEW_KEY), NAME, rewrapped) == data


def test_header_to_bytes_is_the_stored_header():
    sealed = seal(Keyring(KEY), NAME, plaintext(20), segment_size=S)
    assert Header.parse(sealed, NAME).to_bytes() == sealed[:HEADER_SIZE]


@pytest.mark.parametrize('size', [0, crypto.MAX_SEGMENT_SIZE + 1])
def test_seal_refuses_an_impossible_segment_size(size):
    with pytest.raises(ValueError, match='is not 1..16777216'):
        seal(Keyring(KEY), NAME, b'data', segment_size=size)


def test_seal_needs_a_current_key():
    with pytest.raises(ValueError, match='ASGI_LOOK_ENCRYPTION_KEY is not set'):
        seal(Keyring(None, [KEY]), NAME, b'data')
    assert not Keyring(None, [KEY]).encrypts
    assert Keyring(KEY).encrypts


@pytest.mark.parametrize(
    ('current', 'old'), [(b'\x00' * 31, []), (None, [KEY, b'\x00' * 33])]
)
def test_keyring_refuses_keys_of_the_wrong_size(current, old):
    with pytest.raises(ValueError, match='must be 32 bytes, not 3[13]'):
        Keyring(current, old)


def b64(key):
    return base64.b64encode(key).decode()


@pytest.mark.parametrize(
    ('current', 'old'), [(None, None), ('', ''), ('  ', ' , ,'), (None, ',')]
)
def test_no_keys_in_the_settings_is_no_keyring(current, old):
    assert Keyring.from_settings(current, old) is None


def test_keyring_from_settings_reads_both_variables():
    keyring = Keyring.from_settings(
        f' {b64(KEY)}\n', f'{b64(OTHER_KEY)}, {b64(NEW_KEY)},'
    )
    assert keyring is not None
    assert keyring.encrypts
    assert keyring.current_id == crypto.key_id(KEY)
    for key in [OTHER_KEY, NEW_KEY]:
        sealed = seal(Keyring(key), NAME, b'data', segment_size=S)
        assert unseal(keyring, NAME, sealed) == b'data'
    reading = Keyring.from_settings(None, b64(OTHER_KEY))
    assert reading is not None
    assert not reading.encrypts


@pytest.mark.parametrize(
    ('current', 'old', 'message'),
    [
        ('not-base64!', None, 'ASGI_LOOK_ENCRYPTION_KEY is not base64'),
        (b64(KEY[:16]), None, 'ASGI_LOOK_ENCRYPTION_KEY decodes to 16 bytes, not 32'),
        (
            b64(KEY),
            f'{b64(OTHER_KEY)},{b64(KEY + b"!")}',
            r'ASGI_LOOK_ENCRYPTION_OLD_KEYS \(key 2 of 2\) decodes to 33 bytes',
        ),
        (
            None,
            'c2VjcmV0',
            r'ASGI_LOOK_ENCRYPTION_OLD_KEYS \(key 1 of 1\) decodes to 6 bytes',
        ),
        (None, 'abc', r'ASGI_LOOK_ENCRYPTION_OLD_KEYS \(key 1 of 1\) is not base64'),
    ],
)
def test_keyring_from_settings_names_the_variable_of_a_bad_key(current, old, message):
    with pytest.raises(ValueError, match=message) as raised:
        Keyring.from_settings(current, old)
    assert 'base64 of 32 random bytes' in str(raised.value)
    # NOTE: A key, even a wrong one, is a secret: never in a message.
    for value in [current, *(old or '').split(',')]:
        assert not value or value not in str(raised.value)


def test_reprs_show_key_ids_and_never_keys():
    keyring = Keyring(KEY, [OTHER_KEY])
    sealed = seal(keyring, NAME, b'data', segment_size=S)
    data_key = Header.parse(sealed, NAME).open(keyring)
    text = repr(keyring) + repr(data_key)
    assert crypto.key_id(KEY).hex() in text
    assert crypto.key_id(OTHER_KEY).hex() in text
    for key in [KEY, OTHER_KEY, unwrap_by_hand(sealed)]:
        assert key.hex() not in text
        assert b64(key) not in text
        assert repr(key) not in text

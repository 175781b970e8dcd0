"""Encryption at rest: the sealed format of stored objects, and its primitives.

Off by default. With ``ASGI_LOOK_ENCRYPTION_KEY`` (the base64 of 32 random
bytes, e.g. ``openssl rand -base64 32``) every object written from then on (an
original, a thumbnail, a rendition) is *sealed*: encrypted and authenticated
with AES-256-OCB3 (AES-256-GCM in format version 1), in segments, so that a
byte range is served by fetching and decrypting only the segments it touches.
``ASGI_LOOK_ENCRYPTION_OLD_KEYS`` (comma-separated base64) are keys that still
open objects but seal nothing, so that keys can be rotated (see
:mod:`asgilook.storage.keyring`): :func:`rewrap` gives an object a new header
under the current key without touching its segments. Objects stored before
encryption was turned on stay plain, and :func:`is_sealed` tells them apart.

A sealed object (all integers big-endian)::

     offset  size  field
     ------  ----  ---------------------------------------------------------
          0     8  magic         00 41 4C 4B 53 45 41 4C  ("\\0ALKSEAL")  -+
          8     1  version       02 (01: the segments are AES-256-GCM)     |
          9     4  segment size  S, plaintext bytes per segment (64 KiB)   | fixed
         13     8  plain length  L, plaintext bytes in the object          | part
         21    16  salt          random, unique to the object             -+
         37     8  key id        SHA-256("asgilook key id" 00 || key)[:8] -+
         45    12  wrap nonce    random                                    | wrapped
         57    32  wrapped key   AES-256-GCM(key, wrap nonce, data key,    | key
         89    16  wrap tag        associated data = fixed || key id || name)
        105         segment 0, segment 1, ... segment n - 1

    segment i = AEAD(data key, nonce, plaintext[i*S : (i+1)*S],
                     associated data = fixed part)
                ciphertext (as long as its plaintext) || tag (16 bytes)
    AEAD      = AES-256-OCB3 (RFC 7253) in version 2, AES-256-GCM in version 1
    nonce     = i as 11 bytes || 01 if i == n - 1 (the last segment) else 00
    n         = max(1, ceil(L / S)); the object is 105 + L + 16 * n bytes.

The version byte names the cipher of the segments, nothing else: both take a
12-byte nonce and give a 16-byte tag, so the layout and the sizes are the
same, and the wrap is AES-256-GCM in both. Why version 2: OCB3 encrypts and
authenticates in one pass of AES, where GCM adds a GHASH pass; decrypting
4.5 MB in 64 KiB segments took 1.4 ms with OCB3 against 2.4 ms with GCM
(cryptography 51, OpenSSL 4.1, x86-64 with AES-NI), and serving an encrypted
original is mostly that. New objects are sealed in version 2
(:func:`sealing_version`); objects of version 1 are read as ever. A
:func:`rewrap` keeps the fixed part, version byte included, as the segments
it keeps are still of that version, and needs no OCB3: keys rotate on any
build. Re-encryption (``asgilook rekey --reencrypt``) writes version 2.
Where the cryptography library has no OCB3 (built on LibreSSL or BoringSSL),
new objects are sealed in version 1 (logged once), and an object of version 2
is refused as :class:`~asgilook.errors.DamagedObject`, naming the reason.

Why it is safe, and what each part is for:

* The data key is random and used for one object only, so the segment counter
  is a unique nonce (as OCB3 and GCM both need); :func:`rewrap` keeps the
  data key and re-encrypts nothing. Re-encryption (:func:`unseal` then
  :func:`seal`) makes a new data key.
* :meth:`Header.open` authenticates the whole header before any segment is
  decrypted: the wrap's associated data is the fixed part, the key id and the
  object's name. A changed header byte, or the object stored under another
  name (a swap), fails there. The name is bound by the wrap only, not by the
  segments (they are bound to the header by the data key, which opens only
  through a header written for that name), so an object can be renamed by a
  re-wrap; a segment is never decrypted before its header was authenticated.
  The version byte is in the fixed part: a version 2 object is never read
  as version 1, nor the other way round.
* The salt makes the associated data of every object unique, so a wrapped key
  never authenticates in the header of another object, even of the same name
  and length.
* Segments carry their index in the nonce (reordering, dropping or duplicating
  one fails) and the last segment a flag (a truncation at a segment boundary
  fails even where the length was forged); the length, authenticated in the
  header, fixes the size of every segment and of the object
  (:meth:`Header.check_size`).
  An empty object has one empty, last segment, so that it is verified too.
* The magic starts with a NUL, which no JPEG (FF D8), PNG (89), GIF, WebP
  (RIFF), TIFF or BMP starts with, and its second byte is not the NUL with
  which ISO-BMFF boxes (AVIF, HEIC, JPEG XL) start, nor are bytes 4..8 their
  ``ftyp``: a plain picture is never taken for a sealed object.
* The key id is a hash of the key, never the key: it picks the key that opens
  the object, and tells which objects :func:`needs_rewrap` after a rotation.
* The wrap nonce is random: 2**32 wraps under one key keep the chance of a
  repeated nonce below 2**-32; far more objects than a picture service stores.

What it does not do: replaying an older sealed object of the same name is not
detected here (the index names versions, and ETags come from the index).

Reading an object of ``size`` bytes, all or a range ``[start, end)``::

    prefix = first HEADER_SIZE bytes (fewer if the object is smaller)
    if not is_sealed(prefix): the object is plain
    header = Header.parse(prefix, name); header.check_size(size)
    offset, stop = header.span(start, end)  # fetch bytes [offset, stop)
    decryptor = Decryptor(header, header.open(keyring), start, end)
    for chunk in fetched: yield decryptor.feed(chunk)
    decryptor.finish()  # raises DamagedObject if it came short

Every failure is :class:`asgilook.errors.DamagedObject`, whose message names
the object: damaged, truncated, swapped, or sealed with a key not configured.
Nothing is returned before the segment that holds it was authenticated.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.exceptions import UnsupportedAlgorithm

from asgilook.errors import DamagedObject

# NOTE: Also imported from here: the format's names in one place.
from asgilook.storage.ciphers import GCM_VERSION as GCM_VERSION
from asgilook.storage.ciphers import OCB_VERSION as OCB_VERSION
from asgilook.storage.ciphers import VERSIONS as VERSIONS
from asgilook.storage.ciphers import Cipher
from asgilook.storage.ciphers import cipher
from asgilook.storage.ciphers import sealing_version as sealing_version
from asgilook.storage.keyring import CURRENT_KEY_VARIABLE as CURRENT_KEY_VARIABLE
from asgilook.storage.keyring import KEY_ID_SIZE as KEY_ID_SIZE
from asgilook.storage.keyring import KEY_SIZE as KEY_SIZE
from asgilook.storage.keyring import OLD_KEYS_VARIABLE as OLD_KEYS_VARIABLE
from asgilook.storage.keyring import Keyring as Keyring
from asgilook.storage.keyring import key_id as key_id

MAGIC = b'\x00ALKSEAL'
#: The version new objects are sealed in (see :func:`sealing_version`).
VERSION = OCB_VERSION
SEGMENT_SIZE = 64 * 1024
# NOTE: The segment size is read from the header before anything is
#   authenticated; the cap keeps a forged one from making a reader buffer
#   gigabytes for a single segment.
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
TAG_SIZE = 16
WRAP_NONCE_SIZE = 12

_FIXED = struct.Struct('>8sBIQ16s')
FIXED_SIZE = _FIXED.size
SALT_SIZE = 16
WRAP_SIZE = WRAP_NONCE_SIZE + KEY_SIZE + TAG_SIZE
HEADER_SIZE = FIXED_SIZE + KEY_ID_SIZE + WRAP_SIZE

Buffer: TypeAlias = bytes | bytearray | memoryview


def _damaged(name: str, why: str) -> DamagedObject:
    return DamagedObject(f'stored object {name!r} cannot be read: {why}')


def _segment_count(plain_length: int, segment_size: int) -> int:
    # NOTE: At least one, so that an empty object still has a last segment.
    return max(1, -(-plain_length // segment_size))


def _nonce(index: int, last: bool) -> bytes:
    return (index << 8 | last).to_bytes(12, 'big')


class DataKey:
    """The data key of one object, unwrapped by :meth:`Header.open`."""

    __slots__ = ('_key', '_version', '_name')

    def __init__(self, key: bytes, version: int, name: str) -> None:
        self._key = key
        self._version = version
        self._name = name

    def cipher(self) -> Cipher:
        """The cipher of the object's segments, made once per read (it expands
        the key).

        Raises:
            DamagedObject: The object is of version 2, and the cryptography
                library has no AES-OCB3.
        """
        try:
            return cipher(self._version, self._key)
        except UnsupportedAlgorithm:
            raise _damaged(
                self._name,
                f'its segments are AES-256-OCB3 (format version {self._version}), '
                'which the cryptography library of this process does not have '
                '(a build on LibreSSL or BoringSSL): read it where the library '
                'is built on OpenSSL',
            ) from None

    def __repr__(self) -> str:
        return '<DataKey (secret)>'


def _wrap(keyring: Keyring, data_key: bytes, fixed: bytes, name: str) -> bytes:
    """Key id and wrapped key of a header, under the current key."""
    identity, wrapper = keyring.sealing()
    nonce = os.urandom(WRAP_NONCE_SIZE)
    associated = fixed + identity + name.encode()
    return identity + nonce + wrapper.encrypt(nonce, data_key, associated)


@dataclasses.dataclass(frozen=True)
class Header:
    """The header of a sealed object, parsed but not yet authenticated.

    :meth:`open` authenticates it. Until then its fields only say which bytes
    to fetch; a forged field makes :meth:`open`, a segment, or
    :meth:`check_size` fail.
    """

    name: str
    fixed: bytes
    #: The cipher of the segments: :data:`GCM_VERSION` or :data:`OCB_VERSION`.
    version: int
    segment_size: int
    plain_length: int
    key_id: bytes
    wrapped_key: bytes

    @classmethod
    def parse(cls, prefix: Buffer, name: str) -> Header:
        """The header at the start of a sealed object.

        Args:
            prefix: The first :data:`HEADER_SIZE` bytes of the object (more
                are ignored; fewer are a truncated object).
            name: The name the object is stored under.

        Raises:
            DamagedObject: ``prefix`` is not the header of a sealed object of
                a version and segment size this module reads.
        """
        if not is_sealed(prefix):
            raise _damaged(name, 'it is not a sealed object')
        if len(prefix) < HEADER_SIZE:
            raise _damaged(
                name, f'it is truncated inside its {HEADER_SIZE}-byte header'
            )
        _, version, segment_size, plain_length, _ = _FIXED.unpack_from(prefix)
        if version not in VERSIONS:
            raise _damaged(name, f'its format version {version} is not known')
        if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
            raise _damaged(name, f'its segment size {segment_size} is impossible')
        wrap_start = FIXED_SIZE + KEY_ID_SIZE
        return cls(
            name=name,
            fixed=bytes(prefix[:FIXED_SIZE]),
            version=version,
            segment_size=segment_size,
            plain_length=plain_length,
            key_id=bytes(prefix[FIXED_SIZE:wrap_start]),
            wrapped_key=bytes(prefix[wrap_start:HEADER_SIZE]),
        )

    def to_bytes(self) -> bytes:
        """The header as stored."""
        return self.fixed + self.key_id + self.wrapped_key

    @property
    def segment_count(self) -> int:
        """How many segments the object has (one, at least)."""
        return _segment_count(self.plain_length, self.segment_size)

    @property
    def sealed_length(self) -> int:
        """The size of the whole sealed object, header included."""
        return HEADER_SIZE + self.plain_length + TAG_SIZE * self.segment_count

    def check_size(self, size: int) -> None:
        """Raise DamagedObject unless the stored object is ``size`` bytes."""
        if size != self.sealed_length:
            raise _damaged(
                self.name,
                f'it is {size} bytes long, and its header says {self.sealed_length}',
            )

    def _offset(self, index: int) -> int:
        """Where segment ``index`` starts in the object (its end, for n)."""
        end = HEADER_SIZE + index * (self.segment_size + TAG_SIZE)
        return min(end, self.sealed_length)

    def _segments(self, start: int, end: int) -> tuple[int, int]:
        """The first segment and the one after the last covering [start, end)."""
        if not 0 <= start <= end <= self.plain_length:
            raise ValueError(
                f'[{start}, {end}) is not a range of the {self.plain_length} bytes '
                f'of {self.name!r}'
            )
        size, count = self.segment_size, self.segment_count
        if end == self.plain_length:
            # NOTE: A range reaching the end always takes the last segment,
            #   so that its flag is checked: an empty object is verified too.
            return min(start // size, count - 1), count
        if start == end:
            return start // size, start // size
        return start // size, -(-end // size)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The bytes of the object to fetch to read plaintext [start, end).

        Returns:
            ``(offset, stop)``: the object's bytes [offset, stop) are the whole
            segments holding the range, for a :class:`Decryptor` of the range.

        Raises:
            ValueError: ``[start, end)`` is not within the plaintext.
        """
        first, stop = self._segments(start, end)
        return self._offset(first), self._offset(stop)

    def unwrap(self, keyring: Keyring | None) -> bytes:
        """Authenticate the header; the object's data key, as bytes.

        Args:
            keyring: The service's keys; None when encryption is not set up.

        Raises:
            DamagedObject: No configured key has the header's key id, or the
                header fails authentication (damaged, or the object of
                another name).
        """
        wrapper = keyring.opening(self.key_id) if keyring else None
        if wrapper is None:
            raise _damaged(
                self.name,
                f'it was sealed with key id {self.key_id.hex()}, and no key with '
                f'that id is configured ({CURRENT_KEY_VARIABLE}, {OLD_KEYS_VARIABLE})',
            )
        nonce = self.wrapped_key[:WRAP_NONCE_SIZE]
        associated = self.fixed + self.key_id + self.name.encode()
        try:
            return wrapper.decrypt(
                nonce, self.wrapped_key[WRAP_NONCE_SIZE:], associated
            )
        except InvalidTag:
            raise _damaged(
                self.name,
                'its header fails authentication: it is damaged, or it is the '
                'object of another name',
            ) from None

    def open(self, keyring: Keyring | None) -> DataKey:
        """Authenticate the header and unwrap the object's data key.

        Raises:
            DamagedObject: As :meth:`unwrap`.
        """
        return DataKey(self.unwrap(keyring), self.version, self.name)


class Decryptor:
    """Decrypt and verify the plaintext [start, end) of a sealed object.

    Feed it the object's bytes :meth:`Header.span` names, in chunks of any
    size; it returns plaintext only from segments that were authenticated.

    Args:
        header: The object's header.
        data_key: What ``header.open(keyring)`` returned.
        start: The first plaintext byte wanted.
        end: The plaintext byte after the last one wanted; None for the end.

    Raises:
        ValueError: ``[start, end)`` is not within the plaintext.
        DamagedObject: The object is of version 2, and the cryptography
            library has no AES-OCB3 (:meth:`DataKey.cipher`).
    """

    def __init__(
        self, header: Header, data_key: DataKey, start: int = 0, end: int | None = None
    ) -> None:
        end = header.plain_length if end is None else end
        self._next, self._stop = header._segments(start, end)
        self._header = header
        self._aead = data_key.cipher()
        self._start = start
        self._end = end
        self._pending = bytearray()
        # NOTE: Segments are decrypted into this buffer, kept from one chunk
        #   to the next: a new one for each chunk (a MiB) cost more than the
        #   decryption, its fresh pages faulting in as they were written.
        self._plain = bytearray()
        # NOTE: Worked out once: feed() runs for every chunk of every read.
        self._count = count = header.segment_count
        self._cipher = header.segment_size + TAG_SIZE
        self._last_cipher = header._offset(count) - header._offset(count - 1)

    def feed(self, chunk: Buffer) -> bytes:
        """The plaintext of the segments that ``chunk`` completes.

        Segments are decrypted into one buffer; only the first and last of a
        range are cut.

        Raises:
            DamagedObject: A segment fails authentication, or bytes follow
                the last segment of the span.
        """
        view = memoryview(chunk)
        segments: list[memoryview] = []
        first = self._next
        if self._pending:
            size = self._cipher_size(self._next)
            taken = view[: size - len(self._pending)]
            self._pending += taken
            view = view[len(taken) :]
            if len(self._pending) < size:
                return b''
            segments.append(memoryview(self._pending))
            self._next += 1
            self._pending = bytearray()
        used = 0
        while self._next < self._stop:
            size = self._cipher_size(self._next)
            if len(view) - used < size:
                break
            segments.append(view[used : used + size])
            used += size
            self._next += 1
        if self._next == self._stop and len(view) > used:
            raise _damaged(self._header.name, 'bytes follow its last segment')
        if len(view) > used:
            self._pending = bytearray(view[used:])
        return self._open(first, segments) if segments else b''

    def finish(self) -> None:
        """Check that every segment of the span arrived.

        Raises:
            DamagedObject: The object ended inside or before a segment.
        """
        if self._pending or self._next < self._stop:
            raise _damaged(
                self._header.name,
                f'it is truncated at segment {self._next} of {self._count}',
            )

    def _cipher_size(self, index: int) -> int:
        return self._last_cipher if index == self._count - 1 else self._cipher

    def _open(self, first: int, segments: list[memoryview]) -> bytes:
        """Decrypt segments ``first``, ``first + 1``... into one buffer."""
        header, fixed = self._header, self._header.fixed
        length = sum(map(len, segments)) - TAG_SIZE * len(segments)
        if len(self._plain) < length:
            self._plain = bytearray(length)
        out, at = memoryview(self._plain), 0
        for index, segment in enumerate(segments, first):
            size = len(segment) - TAG_SIZE
            nonce = _nonce(index, index == self._count - 1)
            try:
                self._aead.decrypt_into(nonce, segment, fixed, out[at : at + size])
            except InvalidTag:
                raise _damaged(
                    header.name,
                    f'segment {index} of {self._count} fails authentication',
                ) from None
            at += size
        # NOTE: Only the first and last segments of a range are cut.
        position = first * header.segment_size
        low = max(self._start - position, 0)
        high = min(self._end - position, length)
        # NOTE: Bytes, as ASGI wants a body: the one copy of the plaintext.
        return bytes(out[low:high])


def is_sealed(prefix: Buffer) -> bool:
    """Whether an object starting with ``prefix`` is sealed, not plain.

    A prefix of the magic shorter than it counts as sealed: it is a truncated
    sealed object, to be refused, not a picture.
    """
    return bool(prefix) and prefix[: len(MAGIC)] == MAGIC[: len(prefix)]


def seal(
    keyring: Keyring,
    name: str,
    data: Buffer,
    *,
    segment_size: int = SEGMENT_SIZE,
    version: int | None = None,
) -> bytes:
    """The sealed object of ``data``, to be stored under ``name``.

    Args:
        keyring: Its current key wraps the object's new data key.
        name: The name the object is stored under; it opens under it only.
        data: The plaintext.
        segment_size: Plaintext bytes per segment (tests use small ones).
        version: The format version; None for :func:`sealing_version`.

    Raises:
        ValueError: The keyring has no current key, or the segment size is
            not within 1..MAX_SEGMENT_SIZE, or the version is not known.
        UnsupportedAlgorithm: Version 2 asked for, and the library has no
            AES-OCB3.
    """
    if not 1 <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(f'segment size {segment_size} is not 1..{MAX_SEGMENT_SIZE}')
    version = sealing_version() if version is None else version
    if version not in VERSIONS:
        raise ValueError(f'format version {version} is not one of {VERSIONS}')
    data_key = os.urandom(KEY_SIZE)
    aead = cipher(version, data_key)
    salt = os.urandom(SALT_SIZE)
    fixed = _FIXED.pack(MAGIC, version, segment_size, len(data), salt)
    parts = [fixed, _wrap(keyring, data_key, fixed, name)]
    view = memoryview(data)
    count = _segment_count(len(data), segment_size)
    for index in range(count):
        start = index * segment_size
        plain = view[start : start + segment_size]
        parts.append(aead.encrypt(_nonce(index, index == count - 1), plain, fixed))
    return b''.join(parts)


def unseal(keyring: Keyring | None, name: str, sealed: bytes) -> bytes:
    """The plaintext of a whole sealed object stored under ``name``.

    Raises:
        DamagedObject: It is not a sealed object, is damaged, truncated, the
            object of another name, or sealed with a key not in ``keyring``.
    """
    header = Header.parse(sealed, name)
    header.check_size(len(sealed))
    decryptor = Decryptor(header, header.open(keyring))
    plain = decryptor.feed(memoryview(sealed)[HEADER_SIZE:])
    decryptor.finish()
    return plain


def unseal_range(
    keyring: Keyring | None, header: Header, ciphertext: Buffer, start: int, end: int
) -> bytes:
    """Plaintext [start, end) from the bytes ``header.span(start, end)`` names.

    Raises:
        DamagedObject: As :func:`unseal`.
        ValueError: ``[start, end)`` is not within the plaintext.
    """
    decryptor = Decryptor(header, header.open(keyring), start, end)
    plain = decryptor.feed(ciphertext)
    decryptor.finish()
    return plain


def needs_rewrap(keyring: Keyring, header: Header) -> bool:
    """Whether the object's key is not the current one (and there is one)."""
    return keyring.encrypts and header.key_id != keyring.current_id


def rewrap(
    keyring: Keyring, name: str, sealed_prefix: bytes, *, new_name: str | None = None
) -> bytes:
    """A new header for a sealed object, under the keyring's current key.

    The segments stay as they are: the object becomes the new header (of the
    same :data:`HEADER_SIZE`) followed by its old bytes from HEADER_SIZE on.
    The fixed part, the version of the segments included, is kept; no
    segment cipher is needed, so this works for version 2 even where the
    library has no AES-OCB3.

    Args:
        keyring: Opens the old header with any of its keys; seals with the
            current one.
        name: The name the object is stored under.
        sealed_prefix: The object's first HEADER_SIZE bytes (or more).
        new_name: The name it is to be stored under from now on, if another.

    Raises:
        DamagedObject: The old header does not open with the keyring.
        ValueError: The keyring has no current key.
    """
    header = Header.parse(sealed_prefix, name)
    data_key = header.unwrap(keyring)
    target = name if new_name is None else new_name
    return header.fixed + _wrap(keyring, data_key, header.fixed, target)

"""Lossless removal of metadata from PNG, GIF and WebP files.

The counterpart of :mod:`asgilook.pictures.jpeg` for the containers whose
pictures the service keeps as they were uploaded, beside the JPEG it stores
(see :mod:`asgilook.pictures.kept`). Each function walks the container's
chunks or blocks and copies, byte for byte and in their order, those a
decoder needs to draw the picture; the compressed pixels are never touched,
so the result decodes to exactly the pixels (and frames, and timing) of the
upload.

Kept:

- PNG: every critical chunk (``IHDR``, ``PLTE``, ``IDAT``, ``IEND``), and the
  ancillary chunks that say how the samples are to be shown: transparency
  (``tRNS``), colour (``iCCP``, ``sRGB``, ``gAMA``, ``cHRM``, ``cICP``,
  ``sBIT``, the HDR chunks ``mDCV`` and ``cLLI``), background and pixel
  aspect (``bKGD``, ``pHYs``), and an APNG's animation (``acTL``, ``fcTL``,
  ``fdAT``). Dropped: text (``tEXt``, ``zTXt``, ``iTXt``), ``eXIf``, ``tIME``
  and every other ancillary chunk, private ones included.
- GIF: the header, the colour tables, every frame and its graphic control,
  plain-text extensions (drawn, if rarely), and the application extensions
  that loop an animation (``NETSCAPE2.0``, ``ANIMEXTS1.0``) or give its colour
  profile (``ICCRGBG1012``). Dropped: comments, every other application
  extension (XMP among them).
- WebP: the picture's chunks (``VP8``, ``VP8L``, ``ALPH``), an animation's
  (``ANIM``, ``ANMF``), the colour profile (``ICCP``) and the ``VP8X`` header,
  whose EXIF and XMP flags are cleared. Dropped: ``EXIF``, ``XMP`` and unknown
  chunks.

Anything after the end of the picture (``IEND``, the GIF trailer, the RIFF
size) is dropped too: it is no part of it, and may be anything.

NOTE: Dropping EXIF drops its orientation: the pixels stay the same, but a
viewer shows them unturned. The caller keeps a picture that was to be turned
some other way (see :mod:`asgilook.pictures.kept`).

A container that is damaged, truncated, or laid out in a way these walks do
not know is None: the caller then keeps no such copy, rather than a file a
decoder may read otherwise than the upload.
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
#: The ancillary PNG chunks kept: how to show the samples, and animation.
PNG_KEPT = frozenset(
    {
        b'tRNS', b'iCCP', b'sRGB', b'gAMA', b'cHRM', b'cICP', b'sBIT',
        b'mDCV', b'cLLI', b'bKGD', b'pHYs', b'acTL', b'fcTL', b'fdAT',
    }
)  # fmt: skip
GIF_SIGNATURES = (b'GIF87a', b'GIF89a')
#: The application extensions a GIF keeps (identifier and authentication code).
GIF_KEPT = frozenset({b'NETSCAPE2.0', b'ANIMEXTS1.0', b'ICCRGBG1012'})
GIF_EXTENSION, GIF_FRAME, GIF_TRAILER = 0x21, 0x2C, 0x3B
GIF_COMMENT, GIF_APPLICATION = 0xFE, 0xFF
#: The WebP chunks kept; and the VP8X flags of the metadata dropped.
WEBP_KEPT = frozenset({b'VP8X', b'ICCP', b'ANIM', b'ANMF', b'ALPH', b'VP8 ', b'VP8L'})
WEBP_EXIF_FLAG, WEBP_XMP_FLAG = 0x08, 0x04


class _Unsupported(Exception):
    """The bytes are not a container that can be rewritten safely."""


def is_webp(data: bytes) -> bool:
    """Whether ``data`` starts as a WebP file does (a RIFF file of form WEBP)."""
    return data[:4] == b'RIFF' and data[8:12] == b'WEBP'


def strip_png(data: bytes) -> bytes | None:
    """A PNG (or APNG) without its metadata chunks; None if it cannot be."""
    try:
        return _png(data)
    except _Unsupported:
        return None


def strip_gif(data: bytes) -> bytes | None:
    """A GIF without its comments and foreign application extensions."""
    try:
        return b''.join(_gif(data))
    except _Unsupported:
        return None


def strip_webp(data: bytes) -> bytes | None:
    """A WebP without its EXIF, XMP and unknown chunks; None if it cannot be."""
    try:
        return _webp(data)
    except _Unsupported:
        return None


# PNG


def _png(data: bytes) -> bytes:
    if not data.startswith(PNG_SIGNATURE):
        raise _Unsupported
    view = memoryview(data)
    kept: list[bytes | memoryview] = [view[:8]]
    position = 8
    first = True
    while True:
        if position + 12 > len(data):
            raise _Unsupported
        (length,) = struct.unpack_from('>I', data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data) or not kind.isalpha() or first != (kind == b'IHDR'):
            raise _Unsupported
        first = False
        # NOTE: Critical chunks (an upper-case first letter) are all kept: a
        #   decoder that meets one it does not know refuses the file.
        if kind[:1].isupper() or kind in PNG_KEPT:
            kept.append(view[position:end])
        position = end
        if kind == b'IEND':
            return b''.join(kept)


# GIF


def _gif(data: bytes) -> list[bytes | memoryview]:
    """The blocks of a GIF to keep, in order, and its trailer."""
    if data[:6] not in GIF_SIGNATURES or len(data) < 13:
        raise _Unsupported
    view = memoryview(data)
    position = _after_colour_table(data, 10, 13)
    if position > len(data):
        raise _Unsupported
    kept: list[bytes | memoryview] = [view[:position]]
    while position < len(data):
        block = data[position]
        if block == GIF_TRAILER:
            break
        if block == GIF_FRAME:
            # Its position, size and flags; its colours; its LZW code size.
            start = _after_colour_table(data, position + 9, position + 10) + 1
            end = _after_sub_blocks(data, start)
        elif block == GIF_EXTENSION:
            end = _after_sub_blocks(data, position + 2)
            if not _gif_kept(data, position):
                position = end
                continue
        else:
            # NOTE: Pillow would look further for a block, a byte at a time;
            #   browsers stop. Either may draw what the other does not.
            raise _Unsupported
        kept.append(view[position:end])
        position = end
    # NOTE: A GIF cut after a whole block (no trailer) is common, and is
    #   read as if it had one: it gets one.
    kept.append(bytes([GIF_TRAILER]))
    return kept


def _gif_kept(data: bytes, position: int) -> bool:
    """Whether the extension at ``position`` is kept."""
    label = data[position + 1 : position + 2]
    if label == bytes([GIF_COMMENT]):
        return False
    if label != bytes([GIF_APPLICATION]):
        return True
    # NOTE: Its first sub-block is its identifier and authentication code.
    size = data[position + 2]
    return size == 11 and data[position + 3 : position + 14] in GIF_KEPT


def _after_colour_table(data: bytes, flags: int, end: int) -> int:
    """Where the colour table that the ``flags`` byte may announce ends."""
    if flags >= len(data):
        raise _Unsupported
    bits = data[flags]
    return end + (3 << ((bits & 7) + 1) if bits & 0x80 else 0)


def _after_sub_blocks(data: bytes, position: int) -> int:
    """Where the sub-blocks from ``position`` (a length, then bytes) end,
    after the empty one that ends them."""
    while position < len(data) and data[position]:
        position += data[position] + 1
    if position >= len(data):
        raise _Unsupported
    return position + 1


# WebP


def _webp(data: bytes) -> bytes:
    if len(data) < 20 or not is_webp(data):
        raise _Unsupported
    (size,) = struct.unpack_from('<I', data, 4)
    end = 8 + size
    if end > len(data) or size % 2:
        raise _Unsupported
    chunks: list[bytes] = []
    position = 12
    while position < end:
        if position + 8 > end:
            raise _Unsupported
        kind = data[position : position + 4]
        (length,) = struct.unpack_from('<I', data, position + 4)
        # NOTE: A chunk of odd length is padded to an even one.
        after = position + 8 + length + length % 2
        if after > end:
            raise _Unsupported
        if kind in WEBP_KEPT:
            chunks.append(data[position:after])
        position = after
    if not chunks:
        raise _Unsupported
    if chunks[0][:4] == b'VP8X':
        # Its flags, then the canvas's size: ten bytes.
        if len(chunks[0]) != 18:
            raise _Unsupported
        header = bytearray(chunks[0])
        header[8] &= ~(WEBP_EXIF_FLAG | WEBP_XMP_FLAG) & 0xFF
        chunks[0] = bytes(header)
    body = b''.join(chunks)
    riff = b'RIFF' + struct.pack('<I', 4 + len(body)) + b'WEBP'
    return riff + body


# HEIF and AVIF


def strip_heif(data: bytes) -> bytes | None:
    """An HEIF (HEIC) or AVIF file without its EXIF and XMP; None if it
    cannot be.

    NOTE: Unlike the others, rewritten in place, every byte where it was: an
    item's data is found by file offsets (``iloc``), which moving anything
    would break. The metadata items (type ``Exif``, and ``mime`` of
    ``application/rdf+xml``) get the type :data:`HEIF_HIDDEN`, which no
    reader knows and every reader passes by, and their data is zeroed. The
    orientation is no loss: HEIF's is its ``irot`` and ``imir`` properties,
    and readers ignore the EXIF one.
    """
    try:
        return _heif(data)
    except _Unsupported:
        return None


#: The item type the metadata items are given, one no reader knows.
HEIF_HIDDEN = b'hide'
#: XMP's media type, as a ``mime`` item gives it.
XMP_TYPE = b'application/rdf+xml'


def _heif(data: bytes) -> bytes:
    meta = _heif_box(data, 0, len(data), b'meta')
    # NOTE: A full box: its version and flags come before its children.
    start, end = meta[0] + 4, meta[1]
    iinf = _heif_box(data, start, end, b'iinf')
    iloc = _heif_box(data, start, end, b'iloc')
    try:
        idat: tuple[int, int] | None = _heif_box(data, start, end, b'idat')
    except _Unsupported:
        idat = None
    hidden = _metadata_items(data, *iinf)
    output = bytearray(data)
    for at in hidden.values():
        output[at : at + 4] = HEIF_HIDDEN
    for item, method, base, extents in _heif_locations(data, *iloc):
        if item not in hidden:
            continue
        source = (0, len(data)) if method == 0 else idat if method == 1 else None
        if source is None:
            raise _Unsupported
        for offset, length in extents:
            first = source[0] + base + offset
            last = first + length if length else source[1]
            if last > source[1]:
                raise _Unsupported
            output[first:last] = bytes(last - first)
    return bytes(output)


def _heif_box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int]:
    """Where the body of the first box of ``kind`` between ``start`` and
    ``end`` starts and ends."""
    at = start
    while at + 8 <= end:
        (size,) = struct.unpack_from('>I', data, at)
        body = at + 8
        if size == 1 and at + 16 <= end:
            (size,) = struct.unpack_from('>Q', data, at + 8)
            body = at + 16
        elif size == 0:
            size = end - at
        if size < body - at or at + size > end:
            raise _Unsupported
        if data[at + 4 : at + 8] == kind:
            return body, at + size
        at += size
    raise _Unsupported


def _metadata_items(data: bytes, start: int, end: int) -> dict[int, int]:
    """The metadata items of an ``iinf`` body: where each one's type is, by ID."""
    # A full box, then the number of entries: 16 bits in version 0, else 32.
    if start >= end:
        raise _Unsupported
    at = start + (6 if data[start] == 0 else 8)
    found = {}
    while at < end:
        entry, after = _heif_box(data, at, end, b'infe')
        version = data[entry]
        if version in (2, 3):
            # Its ID (16 or 32 bits), its protection index, its type, its
            # name; a ``mime`` item's media type after that.
            id_size = 2 if version == 2 else 4
            item = int.from_bytes(data[entry + 4 : entry + 4 + id_size], 'big')
            kind_at = entry + 6 + id_size
            kind = data[kind_at : kind_at + 4]
            name_end = data.find(b'\0', kind_at + 4, after)
            media = data[name_end + 1 : after] if name_end >= 0 else b''
            if kind == b'Exif' or (kind == b'mime' and media.startswith(XMP_TYPE)):
                found[item] = kind_at
        at = after
    return found


def _heif_locations(
    data: bytes, start: int, end: int
) -> list[tuple[int, int, int, list[tuple[int, int]]]]:
    """Each item of an ``iloc`` body: its ID, construction method, base offset
    and extents (offset, length)."""

    def number(at: int, size: int) -> int:
        if at + size > end:
            raise _Unsupported
        return int.from_bytes(data[at : at + size], 'big')

    version = number(start, 1)
    sizes = number(start + 4, 2)
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    id_size = 4 if version == 2 else 2
    at = start + 6 + id_size
    items = []
    for _ in range(number(start + 6, id_size)):
        item, method = number(at, id_size), 0
        at += id_size
        if version in (1, 2):
            method = number(at, 2) & 15
            at += 2
        base = number(at + 2, base_size)  # After the data reference: this file.
        at += 2 + base_size
        extents = []
        count = number(at, 2)
        at += 2
        for _ in range(count):
            at += index_size
            extents.append(
                (number(at, offset_size), number(at + offset_size, length_size))
            )
            at += offset_size + length_size
        items.append((item, method, base, extents))
    return items

"""Lossless removal of metadata from JPEG files.

An upload may carry more than its picture: EXIF (camera serial numbers, GPS
positions, capture times), XMP, IPTC, comments, ICC profiles and embedded
thumbnails. `strip_metadata` rewrites the marker segments around the compressed
image data and copies that data untouched, so decoding the result gives exactly
the same pixels as decoding the upload, without the loss and the CPU time of
decoding and re-encoding a camera-sized picture.

Kept, byte for byte and in their original order: the quantization and Huffman
tables (DQT, DHT), the restart interval (DRI), the frame header of a baseline,
extended or progressive Huffman-coded JPEG (SOF0-SOF2), every scan header (SOS)
with its entropy-coded data, DNL, and the two application segments that decoders
read to interpret the samples: JFIF APP0 (version, units and pixel density; its
thumbnail is dropped) and Adobe APP14 (the colour transform of RGB, CMYK and YCCK
files). Dropped: every other APPn segment, comments, and anything after the end
of the image, such as the further pictures of an MPO file.

Anything else (arithmetic coding, lossless or hierarchical JPEGs, unknown
markers, damaged or truncated data) makes `strip_metadata` return None: the
caller then decodes and re-encodes the picture and lets the decoder judge it.

NOTE: Dropping EXIF drops its orientation, and dropping an ICC profile drops the
colour space the samples are in: the pixels stay the same, but a viewer may show
them turned or in other colours. Whether that is acceptable is for the caller to
decide before it takes this path.
"""

import re
from collections.abc import Iterator

# Marker codes: the byte after 0xFF.
TEM = 0x01
SOF0 = 0xC0  # Baseline, Huffman coding.
SOF1 = 0xC1  # Extended sequential, Huffman coding.
SOF2 = 0xC2  # Progressive, Huffman coding.
DHT = 0xC4
RST0 = 0xD0
RST7 = 0xD7
SOI = 0xD8
EOI = 0xD9
SOS = 0xDA
DQT = 0xDB
DNL = 0xDC
DRI = 0xDD
APP0 = 0xE0
APP1 = 0xE1
APP14 = 0xEE
APP15 = 0xEF
COM = 0xFE

FRAMES = frozenset({SOF0, SOF1, SOF2})
KEPT = FRAMES | {DHT, DQT, DNL, DRI}
DROPPED = (frozenset(range(APP1, APP15 + 1)) - {APP14}) | {COM}
# NOTE: Standalone markers between segments are dropped: decoders skip them
#   there. Restart markers inside entropy-coded data are kept with that data.
STANDALONE = frozenset(range(RST0, RST7 + 1)) | {TEM}

JFIF = b'JFIF\x00'
# Identifier, version, units, X and Y density, thumbnail width and height.
JFIF_HEADER_SIZE = 14
ADOBE = b'Adobe'

# Fill bytes (any number of 0xFF), then the marker code, which is never 0xFF.
_MARKER = re.compile(rb'\xff+[^\xff]')
# Entropy-coded data ends at the first 0xFF that is neither a stuffed byte
# (0xFF 0x00) nor a restart marker. Searched in C: uploads run to megabytes.
_SCAN_END = re.compile(rb'\xff[^\x00\xd0-\xd7]')


class _Unsupported(Exception):
    """The bytes are not a JPEG that can be rewritten safely."""


def strip_metadata(data: bytes) -> bytes | None:
    """Remove the metadata from a JPEG, leaving its compressed data untouched.

    Args:
        data: The bytes of an uploaded file, of any kind.

    Returns:
        The JPEG without its metadata, which decodes to the same pixels as
        ``data``, or None when ``data`` is not a JPEG this function can rewrite
        safely: not a JPEG at all, truncated or damaged, or coded in a way
        (arithmetic, lossless, hierarchical) it does not know.
    """
    try:
        return b''.join(_kept_segments(data))
    except _Unsupported:
        return None


def _kept_segments(data: bytes) -> Iterator[bytes | memoryview]:
    """Yield SOI, the segments to keep in their order, and EOI."""
    if not data.startswith(b'\xff\xd8'):
        raise _Unsupported
    # NOTE: Slices of a memoryview, so that joining them copies the picture
    #   once: a second copy of a camera-sized picture takes longer than the walk.
    view = memoryview(data)
    yield view[:2]
    position = 2
    seen_frame = seen_scan = False
    while True:
        marker, position = _read_marker(data, position)
        if marker == EOI:
            if not seen_scan:
                raise _Unsupported
            yield view[position - 2 : position]
            return
        if marker in STANDALONE:
            continue
        # The segment starts at the 0xFF before the code, after any fill bytes.
        start = position - 2
        payload_start = position + 2
        position = _segment_end(data, position)
        if marker in KEPT:
            seen_frame = seen_frame or marker in FRAMES
            yield view[start:position]
        elif marker == SOS:
            if not seen_frame:
                raise _Unsupported
            seen_scan = True
            position = _scan_end(data, position)
            yield view[start:position]
        elif marker == APP0:
            yield from _jfif_header(data[payload_start:position])
        elif marker == APP14:
            if data.startswith(ADOBE, payload_start, position):
                yield view[start:position]
        elif marker not in DROPPED:
            raise _Unsupported


def _read_marker(data: bytes, position: int) -> tuple[int, int]:
    """Return the marker code at ``position`` and the position after it."""
    match = _MARKER.match(data, position)
    if match is None:
        raise _Unsupported
    return data[match.end() - 1], match.end()


def _segment_end(data: bytes, position: int) -> int:
    """Return the end of the segment whose length field is at ``position``."""
    # A length field cut short by the end of the data reads as less than 2 or
    # as running past the end, so it needs no check of its own.
    length = int.from_bytes(data[position : position + 2], 'big')
    end = position + length
    if length < 2 or end > len(data):
        raise _Unsupported
    return end


def _scan_end(data: bytes, position: int) -> int:
    """Return the end of the entropy-coded data that starts at ``position``."""
    match = _SCAN_END.search(data, position)
    if match is None:
        raise _Unsupported
    return match.start()


def _jfif_header(payload: bytes) -> Iterator[bytes]:
    """Yield the JFIF APP0 segment for ``payload`` without its thumbnail, if any."""
    if payload.startswith(JFIF) and len(payload) >= JFIF_HEADER_SIZE:
        length = (2 + JFIF_HEADER_SIZE).to_bytes(2, 'big')
        yield b'\xff\xe0' + length + payload[: JFIF_HEADER_SIZE - 2] + b'\x00\x00'

"""Every picture size an HEIF or AVIF file may be decoded at, read without decoding.

A file in either format is a tree of boxes (ISO/IEC 14496-12): items (a
picture, its alpha channel, the tiles of a grid) described in a ``meta`` box,
and tracks (an image sequence) in a ``moov`` box; the coded data is elsewhere,
usually in an ``mdat`` box. :func:`declared_sizes` gives each size the
container declares (an item's ``ispe`` property, a track's header, the output
of a grid) and, for AV1 (AVIF), the largest frame that each of its bitstreams
can make the decoder allocate.

NOTE: The container's sizes are not what an AV1 decoder allocates: dav1d sizes
a frame from its own sequence and frame headers, whatever the container says.
A file that declares 64x64 pixels around a bitstream of 16,384x16,384 costs
nearly 400 MB and over half a second to decode (and then comes out as a 64x64
picture). So the AV1 sequence headers (AV1 specification, 5.5) are
read too: those of the codec configuration (``av1C``), and those in every AV1
item's data and in the first sample of every AV1 track, which must have one
(the AVIF specification requires it of an item, and the decoder, which is
given nothing else, cannot start without it). A frame's size is the maximum
its sequence header declares, unless its frame header overrides it
(``frame_size_override_flag``): it can then be as large as the number of bits
of the size fields allows, and that is its size here (dav1d does not hold it
to the maximum). The frame headers are read up to that flag, nothing further.

Every loop is bounded by the data, and all of them together by
:data:`MAX_STEPS`; a header is never read past :data:`MAX_HEADER` bytes.
Whatever is out of place for this reading raises :class:`Corrupt`; anything
else that is wrong (a box that does not fit, data cut short) is left to the
decoder, which will refuse the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from asgilook.pictures import Size

Data = bytes | memoryview

#: The most boxes, item locations and AV1 OBUs read in one file. Pictures
#: and sequences have tens; a grid of 256 tiles, about a thousand.
MAX_STEPS = 100_000
#: The most bytes of an AV1 sequence header read (the longest possible is
#: under 400 bytes); a frame header needs less than 16.
MAX_HEADER = 512
_FRAME_PREFIX = 16

# Box bodies that start with more than their children: "full boxes" (version
# and flags) and sample entries (the fields of a visual sample entry).
_HEADERS = {b'meta': 4, b'stsd': 8, b'av01': 78}
# The sample table of a track.
_TABLE = (b'mdia', b'minf', b'stbl')

# AV1 OBU types (AV1 specification, 6.2.2).
_SEQUENCE_HEADER = 1
_FRAME_HEADERS = (3, 6, 7)  # Frame header, frame, redundant frame header.
# Frame types (6.8.2), and the value of a sequence header's choice that
# leaves it to each frame (SELECT_SCREEN_CONTENT_TOOLS, SELECT_INTEGER_MV).
_KEY_FRAME = 0
_SWITCH_FRAME = 3
_SELECT = 2


class Corrupt(ValueError):
    """The file cannot be read as far as its sizes: the reason."""


def declared_sizes(data: bytes) -> Iterator[Size]:
    """Each size of picture or frame that an HEIF or AVIF file declares.

    Those of the container come first: every item's ``ispe`` property
    (``meta/iprp/ipco``), every track's header (``moov/trak/tkhd``: 16.16
    fixed point, at the end of the header of either version), and the
    output of every grid item. Then those of the AV1 bitstreams.

    Raises:
        Corrupt: The structure is not readable, or an AV1 item or track
            has no sequence header.
    """
    reader = _Reader(data)
    for body in reader.boxes(data, (b'meta', b'iprp', b'ipco', b'ispe')):
        yield _uint(body, 4, 4), _uint(body, 8, 4)
    for body in reader.boxes(data, (b'moov', b'trak', b'tkhd')):
        at = 88 if body[:1] == b'\x01' else 76
        yield _uint(body, at, 4) >> 16, _uint(body, at + 4, 4) >> 16
    items = [
        (meta, list(reader.items(meta))) for meta in reader.boxes(data, (b'meta',))
    ]
    for _, found in items:
        for kind, item in found:
            if kind == b'grid':
                # Version, flags (bit 0: 32-bit fields), rows and columns less one.
                field = 4 if _uint(item, 1, 1) & 1 else 2
                yield _uint(item, 4, field), _uint(item, 4 + field, field)
    for meta, found in items:
        for config in reader.boxes(meta, (b'iprp', b'ipco', b'av1C')):
            yield from reader.frame_sizes(config[4:], required=False)
        for kind, item in found:
            if kind == b'av01':
                yield from reader.frame_sizes(item, required=True)
    for trak in reader.boxes(data, (b'moov', b'trak')):
        entries = list(reader.boxes(trak, (*_TABLE, b'stsd', b'av01')))
        for entry in entries:
            for config in reader.boxes(entry, (b'av1C',)):
                yield from reader.frame_sizes(config[4:], required=False)
        if entries:
            yield from reader.frame_sizes(reader.first_sample(trak), required=True)


def _uint(data: Data, at: int, size: int) -> int:
    """The big-endian number of ``size`` bytes at ``at`` (0 past the end)."""
    return int.from_bytes(data[at : at + size], 'big')


class _Reader:
    """The structure of one file, read in at most :data:`MAX_STEPS` steps."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._steps = 0
        # Bytes copied to join items of several extents: at most the file's.
        self._copied = 0

    def _step(self) -> None:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise Corrupt(f'more than {MAX_STEPS:,} boxes, item extents and OBUs')

    def boxes(self, data: bytes, path: tuple[bytes, ...]) -> Iterator[bytes]:
        """The bodies of the boxes at ``path`` (types, outermost first) in ``data``.

        Each box is its size (32 bits; 1 for a 64-bit size after the type,
        0 for the rest of its parent), its type and its body. A box whose
        size does not fit ends the search of its parent: the decoder will
        refuse the file.
        """
        kind, rest = path[0], path[1:]
        at = 0
        while at + 8 <= len(data):
            self._step()
            size, start = _uint(data, at, 4), at + 8
            if size == 1:
                size, start = _uint(data, at + 8, 8), at + 16
            elif size == 0:
                size = len(data) - at
            if size < start - at or at + size > len(data):
                return
            if data[at + 4 : at + 8] == kind:
                body = data[start + _header(kind, data, start) : at + size]
                if rest:
                    yield from self.boxes(body, rest)
                else:
                    yield body
            at += size

    def items(self, meta: bytes) -> Iterator[tuple[bytes, Data]]:
        """The type and data of each item of a ``meta`` box.

        NOTE: An item's data is where its location (``iloc``) says: in the
        file, or in the ``idat`` box (construction methods 0 and 1); libavif
        reads no other. Its extents are joined; an extent of length 0 runs
        to the end of its source, and one past the end is cut short there.
        """
        kinds = {}
        for entry in self.boxes(meta, (b'iinf', b'infe')):
            # Versions 2 and 3 have an item type, after a 16 or 32-bit ID
            # and the protection index.
            if entry[:1] == b'\x02':
                kinds[_uint(entry, 4, 2)] = entry[8:12]
            elif entry[:1] == b'\x03':
                kinds[_uint(entry, 4, 4)] = entry[10:14]
        sources = {0: self._data, 1: b''.join(self.boxes(meta, (b'idat',)))}
        for iloc in self.boxes(meta, (b'iloc',)):
            for item, method, extents in self._locations(iloc):
                if item in kinds:
                    yield kinds[item], self._join(sources.get(method, b''), extents)

    def _locations(self, iloc: bytes) -> Iterator[tuple[int, int, list[Size]]]:
        """Each item's ID, construction method and extents (offset, length)."""
        version = _uint(iloc, 0, 1)
        sizes = _uint(iloc, 4, 2)
        offset_size, length_size, base_size = (
            sizes >> 12,
            sizes >> 8 & 15,
            sizes >> 4 & 15,
        )
        index_size = sizes & 15 if version in (1, 2) else 0
        id_size = 4 if version == 2 else 2
        at = 6 + id_size
        for _ in range(_uint(iloc, 6, id_size)):
            self._step()
            item, method = _uint(iloc, at, id_size), 0
            at += id_size
            if version in (1, 2):
                method = _uint(iloc, at, 2) & 15
                at += 2
            at += 2  # The data reference: 0, this file.
            base = _uint(iloc, at, base_size)
            at += base_size
            extents, count = [], _uint(iloc, at, 2)
            at += 2
            for _ in range(count):
                self._step()
                at += index_size
                offset = _uint(iloc, at, offset_size)
                length = _uint(iloc, at + offset_size, length_size)
                extents.append((base + offset, length))
                at += offset_size + length_size
            if at > len(iloc):
                return
            yield item, method, extents

    def _join(self, source: bytes, extents: list[Size]) -> Data:
        view = memoryview(source)
        parts = [
            view[offset : offset + length if length else len(source)]
            for offset, length in extents
        ]
        if len(parts) == 1:
            return parts[0]
        self._copied += sum(len(part) for part in parts)
        if self._copied > len(self._data):
            raise Corrupt('items of more data than the file holds')
        return b''.join(parts)

    def first_sample(self, trak: bytes) -> Data:
        """The first sample of a track: the first of its first chunk.

        NOTE: From the chunk offsets (``stco`` or ``co64``) and the sample
        sizes (``stsz``); libavif reads no compact sizes (``stz2``). A track
        without them has no first sample.
        """
        offsets = [
            _uint(body, 8, size)
            for kind, size in ((b'stco', 4), (b'co64', 8))
            for body in self.boxes(trak, (*_TABLE, kind))
            if _uint(body, 4, 4)
        ]
        sizes = [
            _uint(body, 4, 4) or _uint(body, 12, 4)
            for body in self.boxes(trak, (*_TABLE, b'stsz'))
            if _uint(body, 8, 4)
        ]
        if not (offsets and sizes):
            return b''
        return memoryview(self._data)[offsets[0] : offsets[0] + sizes[0]]

    def frame_sizes(self, stream: Data, required: bool) -> list[Size]:
        """The largest frame each AV1 frame header in ``stream`` can declare.

        ``stream`` is a series of OBUs (open bitstream units; AV1
        specification, 5.3): each a header byte (its type, whether an
        extension byte follows, whether a size does), then its size
        (leb128) if it has one, else it runs to the end of the stream.
        NOTE: An OBU that does not fit ends the stream, as dav1d refuses
        it before reading it. Frame headers before any sequence header
        cannot be decoded, and are passed over.

        Raises:
            Corrupt: ``required``, and there is no sequence header; or a
                header is cut short.
        """
        sizes = []
        sequence = None
        at = 0
        while at < len(stream):
            self._step()
            header = stream[at]
            start, end = _obu_extent(stream, at + 1 + (header >> 2 & 1), header & 2)
            if not start <= end <= len(stream):
                break
            kind = header >> 3 & 15
            if kind == _SEQUENCE_HEADER:
                sequence = _Sequence.read(
                    bytes(stream[start : min(end, start + MAX_HEADER)])
                )
                sizes.append(sequence.size)
            elif kind in _FRAME_HEADERS and sequence is not None:
                prefix = bytes(stream[start : min(end, start + _FRAME_PREFIX)])
                if sequence.overridden(prefix):
                    sizes.append(sequence.widest)
            at = end
        if required and sequence is None:
            raise Corrupt('an AV1 item or sample has no sequence header')
        return sizes


def _header(kind: bytes, data: bytes, start: int) -> int:
    """How many bytes of a box's body (at ``start``) come before its children."""
    if kind == b'iinf':
        # A full box, then the number of entries: 16 bits in version 0.
        return 6 if data[start : start + 1] == b'\0' else 8
    return _HEADERS.get(kind, 0)


def _obu_extent(stream: Data, at: int, sized: int) -> tuple[int, int]:
    """Where an OBU's payload starts and ends, its header ending at ``at``.

    NOTE: A size is a leb128 of at most 8 bytes: 7 bits each, least
    significant first, the top bit set on each byte but the last. One that
    does not end within them (or within the stream) cannot fit.
    """
    if not sized:
        return at, len(stream)
    value = 0
    for index, byte in enumerate(stream[at : at + 8]):
        value |= (byte & 0x7F) << 7 * index
        if byte < 0x80:
            return at + index + 1, at + index + 1 + value
    return at, len(stream) + 1


@dataclasses.dataclass(frozen=True)
class _Sequence:
    """What an AV1 sequence header says of the sizes of its frames."""

    #: The largest frame (max_frame_width_minus_1 and height, plus one).
    size: Size
    #: The largest a frame header can override that with (2 ** the bits of
    #: frame_width_bits_minus_1 and height, plus one).
    widest: Size
    #: reduced_still_picture_header: its one frame is always ``size``.
    reduced: bool
    #: What the frame headers need, up to frame_size_override_flag: the bits
    #: of frame_presentation_time (0: none), the seq_force_screen_content_tools
    #: and seq_force_integer_mv, and the bits of current_frame_id (0: none).
    time_bits: int = 0
    screen_tools: int = 0
    integer_mv: int = 0
    id_bits: int = 0

    @classmethod
    def read(cls, payload: bytes) -> _Sequence:
        """Read a sequence_header_obu (AV1 specification, 5.5) that far."""
        bits = _Bits(payload)
        bits.read(4)  # seq_profile, still_picture.
        reduced = bits.read(1) == 1
        time_bits = 0
        if reduced:
            bits.read(5)  # seq_level_idx[0].
        else:
            decoder_model, delay_bits = False, 0
            if bits.read(1):  # timing_info_present_flag: timing_info().
                bits.read(64)  # num_units_in_display_tick, time_scale.
                equal_interval = bits.read(1)
                if equal_interval:
                    bits.uvlc()  # num_ticks_per_picture_minus_1.
                decoder_model = bits.read(1) == 1
                if decoder_model:  # decoder_model_info().
                    delay_bits = bits.read(5) + 1
                    bits.read(37)  # num_units_in_decoding_tick, removal time bits.
                    # frame_presentation_time_length_minus_1: frame headers
                    # have that time only if the pictures are not equally apart.
                    presentation_bits = bits.read(5) + 1
                    time_bits = 0 if equal_interval else presentation_bits
            display_delay = bits.read(1)  # initial_display_delay_present_flag.
            for _ in range(bits.read(5) + 1):  # operating_points_cnt_minus_1.
                bits.read(12)  # operating_point_idc.
                if bits.read(5) > 7:  # seq_level_idx.
                    bits.read(1)  # seq_tier.
                if decoder_model and bits.read(1):  # operating_parameters_info().
                    bits.read(2 * delay_bits + 1)
                if display_delay and bits.read(1):
                    bits.read(4)  # initial_display_delay_minus_1.
        width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
        size = bits.read(width_bits) + 1, bits.read(height_bits) + 1
        widest = 1 << width_bits, 1 << height_bits
        if reduced:
            return cls(size, widest, reduced)
        id_bits = 0
        if bits.read(1):  # frame_id_numbers_present_flag.
            delta_bits = bits.read(4) + 2
            id_bits = bits.read(3) + 1 + delta_bits
        # Superblocks, filter intra and edge, inter-intra, masked compound,
        # warped motion, dual filter; then enable_order_hint, and its tools.
        bits.read(7)
        if bits.read(1):
            bits.read(2)
        screen_tools = _SELECT if bits.read(1) else bits.read(1)
        integer_mv = _SELECT
        if screen_tools:
            integer_mv = _SELECT if bits.read(1) else bits.read(1)
        return cls(size, widest, reduced, time_bits, screen_tools, integer_mv, id_bits)

    def overridden(self, prefix: bytes) -> bool:
        """Whether a frame header (its first bytes) overrides the frame size.

        The uncompressed_header (AV1 specification, 5.9.2) up to
        frame_size_override_flag. A header that shows an earlier frame again
        decodes none; a switch frame always overrides.
        """
        if self.reduced:
            return False
        bits = _Bits(prefix)
        if bits.read(1):  # show_existing_frame.
            return False
        frame_type, shown = bits.read(2), bits.read(1)
        if shown:
            bits.read(self.time_bits)  # temporal_point_info().
        else:
            bits.read(1)  # showable_frame.
        if frame_type == _SWITCH_FRAME:
            return True
        if not (frame_type == _KEY_FRAME and shown):
            bits.read(1)  # error_resilient_mode.
        bits.read(1)  # disable_cdf_update.
        screen_tools = self.screen_tools
        if screen_tools == _SELECT:
            screen_tools = bits.read(1)
        if screen_tools and self.integer_mv == _SELECT:
            bits.read(1)  # force_integer_mv.
        bits.read(self.id_bits)  # current_frame_id.
        return bits.read(1) == 1


class _Bits:
    """Reads a header bit by bit, most significant first."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, 'big')
        self._left = 8 * len(data)

    def read(self, count: int) -> int:
        if count > self._left:
            raise Corrupt('an AV1 header is cut short')
        self._left -= count
        return self._value >> self._left & ((1 << count) - 1)

    def uvlc(self) -> None:
        """Pass over a variable-length number (AV1 specification, 4.10.3)."""
        zeros = 0
        while not self.read(1):
            zeros += 1
        if zeros < 32:
            self.read(zeros)

"""Metadata removed from PNG, GIF and WebP files, pixels untouched; and the
original kept of each kind of upload (asgilook.pictures.containers, .kept)."""

import io
import struct
import zlib

import PIL.Image
import PIL.ImageCms
import PIL.PngImagePlugin
import pytest

from asgilook.pictures import containers
from asgilook.pictures import decoding
from asgilook.pictures import kept

MAX_PIXELS = 50_000_000
#: An EXIF block that names a camera, and one that says to turn the picture.
EXIF = PIL.Image.Exif()
EXIF[0x010F] = 'Spy Camera Inc.'
TURNED = PIL.Image.Exif()
TURNED[decoding.ORIENTATION_TAG] = 6


def encoded(image, format, **params):
    output = io.BytesIO()
    image.save(output, format, **params)
    return output.getvalue()


def gradient(size=(48, 32), mode='RGBA'):
    """A picture whose every pixel differs from its neighbours, with alpha."""
    width, height = size
    image = PIL.Image.new('RGBA', size)
    image.putdata(
        [
            (x * 5 % 256, y * 7 % 256, (x + y) * 3 % 256, (x * y) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    return image.convert(mode)


def frames_of(data):
    """Every frame of a picture as (mode, size, pixels), and its timing."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        found = []
        for index in range(getattr(image, 'n_frames', 1)):
            image.seek(index)
            frame = image.convert('RGBA')
            found.append((frame.size, frame.tobytes(), image.info.get('duration')))
        return found


def same_pixels(before, after):
    assert frames_of(after) == frames_of(before)


def chunk(kind, body):
    """A PNG chunk: length, type, data and CRC."""
    crc = zlib.crc32(kind + body)
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', crc)


def png_chunks(data):
    """The types of a PNG's chunks, in order."""
    kinds, position = [], 8
    while position < len(data):
        (length,) = struct.unpack_from('>I', data, position)
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


def before_iend(data, *chunks):
    """A PNG with ``chunks`` added before its IEND."""
    end = data.rindex(b'IEND') - 4
    return data[:end] + b''.join(chunks) + data[end:]


def riff_chunks(data):
    """The types of a WebP's chunks, in order."""
    kinds, position = [], 12
    while position < len(data):
        (length,) = struct.unpack_from('<I', data, position + 4)
        kinds.append(data[position : position + 4])
        position += 8 + length + length % 2
    return kinds


def riff(*chunks):
    body = b'WEBP' + b''.join(chunks)
    return b'RIFF' + struct.pack('<I', len(body)) + body


def riff_chunk(kind, body):
    return kind + struct.pack('<I', len(body)) + body + b'\0' * (len(body) % 2)


# PNG


def test_a_png_loses_its_metadata_and_keeps_every_pixel_and_its_alpha():
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text('Author', 'Someone')
    info.add_text('Comment', 'compressed ' * 20, zip=True)
    info.add_itxt('Description', 'ünïcode', lang='de')
    profile = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    upload = encoded(
        gradient(), 'PNG', pnginfo=info, exif=EXIF, icc_profile=profile.tobytes()
    )
    upload = before_iend(
        upload,
        chunk(b'tIME', bytes(7)),
        chunk(b'gAMA', struct.pack('>I', 45455)),
        chunk(b'prVt', b'private things'),
    )
    upload += b'trailing bytes after IEND'
    assert {b'tEXt', b'zTXt', b'iTXt', b'eXIf', b'tIME'} <= set(png_chunks(upload))

    stripped = containers.strip_png(upload)

    assert png_chunks(stripped) == [b'IHDR', b'iCCP', b'IDAT', b'gAMA', b'IEND']
    assert b'Spy Camera' not in stripped and b'Someone' not in stripped
    assert not stripped.endswith(b'after IEND')
    same_pixels(upload, stripped)
    with PIL.Image.open(io.BytesIO(stripped)) as image:
        assert image.mode == 'RGBA'
        assert image.info['icc_profile'] == profile.tobytes()


def test_a_palette_png_keeps_its_palette_and_transparency():
    image = gradient().convert('P')
    upload = encoded(image, 'PNG', transparency=3)
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text('Software', 'x')
    upload = encoded(image, 'PNG', transparency=3, pnginfo=info)
    stripped = containers.strip_png(upload)
    assert png_chunks(stripped) == [b'IHDR', b'PLTE', b'tRNS', b'IDAT', b'IEND']
    same_pixels(upload, stripped)


def test_an_apng_keeps_every_frame_and_its_timing():
    frames = [gradient(), gradient().rotate(180), gradient().transpose(0)]
    info = PIL.PngImagePlugin.PngInfo()
    info.add_text('Title', 'moving')
    upload = encoded(
        frames[0],
        'PNG',
        save_all=True,
        append_images=frames[1:],
        duration=[40, 80, 120],
        loop=0,
        pnginfo=info,
    )
    stripped = containers.strip_png(upload)
    assert b'tEXt' not in png_chunks(stripped)
    assert {b'acTL', b'fcTL', b'fdAT'} <= set(png_chunks(stripped))
    same_pixels(upload, stripped)
    assert len(frames_of(stripped)) == 3


@pytest.mark.parametrize(
    'damage',
    [
        lambda data: b'\x89PNX' + data[4:],  # not a PNG
        lambda data: data[:30],  # cut inside a chunk
        lambda data: data[: data.rindex(b'IEND') - 4],  # no IEND
        lambda data: data[:8] + chunk(b'gAMA', bytes(4)) + data[8:],  # IHDR late
        lambda data: before_iend(data, chunk(b'IHDR', bytes(13))),  # IHDR twice
        lambda data: before_iend(data, chunk(b'1bad', b'')),  # not a chunk type
    ],
)
def test_a_png_that_cannot_be_walked_safely_is_none(damage):
    assert containers.strip_png(damage(encoded(gradient(), 'PNG'))) is None


# GIF


def gif_blocks_at(data):
    """Where a GIF's blocks start, after its header and global colour table."""
    flags = data[10]
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def application(identifier, body):
    """A GIF application extension, its body in one sub-block."""
    return b'\x21\xff\x0b' + identifier + bytes([len(body)]) + body + b'\0'


def animated_gif(**params):
    frames = [gradient(mode='RGB').quantize(64) for _ in range(3)]
    frames[1] = frames[1].rotate(90, expand=False)
    frames[2] = frames[2].transpose(0)
    return encoded(
        frames[0],
        'GIF',
        save_all=True,
        append_images=frames[1:],
        duration=[50, 100, 150],
        loop=0,
        **params,
    )


def test_a_gif_loses_comments_and_foreign_extensions_and_keeps_its_frames():
    upload = animated_gif(comment=b'a comment with a secret')
    at = gif_blocks_at(upload)
    xmp = application(b'XMP DataXMP', b'<x:xmpmeta>secret</x:xmpmeta>')
    upload = upload[:at] + xmp + upload[at:]
    assert b'NETSCAPE2.0' in upload

    stripped = containers.strip_gif(upload)

    assert b'secret' not in stripped
    assert b'NETSCAPE2.0' in stripped
    assert stripped.endswith(b'\x3b')
    same_pixels(upload, stripped)
    assert len(frames_of(stripped)) == 3
    with PIL.Image.open(io.BytesIO(stripped)) as image:
        assert image.info['loop'] == 0


def test_a_gif_cut_after_a_whole_block_gets_its_trailer():
    upload = encoded(gradient(mode='RGB').quantize(16), 'GIF')
    assert upload.endswith(b'\x3b')
    stripped = containers.strip_gif(upload[:-1])
    assert stripped == upload
    same_pixels(upload, stripped)


@pytest.mark.parametrize(
    'damage',
    [
        lambda data: b'GIF90a' + data[6:],  # not a GIF
        lambda data: data[:11],  # no logical screen
        lambda data: data[:20],  # cut in the colour table
        lambda data: data[:-1] + b'\x00\x3b',  # a stray byte between blocks
        lambda data: data[:-3],  # cut in the last frame's data
    ],
)
def test_a_gif_that_cannot_be_walked_safely_is_none(damage):
    assert containers.strip_gif(damage(animated_gif())) is None


def test_a_gif_cut_in_a_frame_descriptor_is_none():
    upload = encoded(gradient(mode='RGB').quantize(16), 'GIF')
    frame = upload.index(b'\x2c', gif_blocks_at(upload))
    assert containers.strip_gif(upload[: frame + 5]) is None


# WebP


def test_a_webp_loses_its_exif_and_xmp_and_keeps_every_pixel():
    upload = encoded(
        gradient(), 'WEBP', lossless=True, exif=EXIF, xmp=b'<x:xmpmeta>me</x:xmpmeta>'
    )
    assert {b'EXIF', b'XMP '} <= set(riff_chunks(upload))
    assert upload[20] & (containers.WEBP_EXIF_FLAG | containers.WEBP_XMP_FLAG)
    upload = upload[:12] + upload[12:] + riff_chunk(b'ABCD', b'odd')
    upload = upload[:4] + struct.pack('<I', len(upload) - 8) + upload[8:]

    stripped = containers.strip_webp(upload)

    assert riff_chunks(stripped) == [b'VP8X', b'VP8L']
    assert not stripped[20] & (containers.WEBP_EXIF_FLAG | containers.WEBP_XMP_FLAG)
    assert struct.unpack_from('<I', stripped, 4)[0] == len(stripped) - 8
    same_pixels(upload, stripped)
    with PIL.Image.open(io.BytesIO(stripped)) as image:
        assert 'exif' not in image.info and 'xmp' not in image.info


def test_an_animated_webp_keeps_every_frame():
    frames = [gradient(), gradient().rotate(180), gradient().transpose(0)]
    upload = encoded(
        frames[0],
        'WEBP',
        save_all=True,
        append_images=frames[1:],
        duration=[40, 80, 120],
        lossless=True,
        exif=EXIF,
    )
    stripped = containers.strip_webp(upload)
    assert b'EXIF' not in riff_chunks(stripped)
    assert b'ANMF' in riff_chunks(stripped)
    same_pixels(upload, stripped)
    assert len(frames_of(stripped)) == 3


def test_a_simple_webp_is_kept_as_it_is():
    upload = encoded(gradient(mode='RGB'), 'WEBP', quality=80)
    assert riff_chunks(upload) == [b'VP8 ']
    assert containers.strip_webp(upload + b'after the RIFF') == upload


@pytest.mark.parametrize(
    'upload',
    [
        b'RIFF\x04\0\0\0WEBP',  # too short
        b'RIFX' + bytes(4) + b'WEBP' + riff_chunk(b'VP8L', bytes(8))[:8],
        riff(riff_chunk(b'VP8L', bytes(8)))[:-2],  # the RIFF longer than the file
        riff(riff_chunk(b'VP8L', bytes(8)), b'x'),  # an odd RIFF size
        riff(riff_chunk(b'VP8L', bytes(8)), b'VP8 xx'),  # a chunk header cut short
        riff(riff_chunk(b'VP8L', bytes(8))[:-4]),  # a chunk longer than the RIFF
        riff(riff_chunk(b'XMP ', bytes(8))),  # nothing kept
        riff(riff_chunk(b'VP8X', bytes(12)), riff_chunk(b'VP8L', bytes(8))),
    ],
)
def test_a_webp_that_cannot_be_walked_safely_is_none(upload):
    assert containers.strip_webp(upload) is None


# What is kept of each kind of upload


@pytest.mark.parametrize(
    'upload',
    [
        encoded(gradient(), 'PNG'),
        encoded(gradient(mode='RGB').quantize(8), 'GIF'),
        encoded(gradient(), 'WEBP', lossless=True),
        encoded(gradient(), 'BMP'),
        encoded(gradient(), 'TIFF'),
        b'MM\0*' + bytes(16),
        b'II+\0' + bytes(16),
    ],
)
def test_an_original_may_be_kept_of_the_formats_whose_jpeg_is_a_conversion(upload):
    assert kept.may_keep(upload)


def test_none_is_kept_of_a_jpeg():
    assert not kept.may_keep(encoded(gradient(mode='RGB'), 'JPEG'))
    # Nor asked of keep(), if it were: JPEG is no format it converts.
    assert kept.keep(encoded(gradient(mode='RGB'), 'JPEG'), True, MAX_PIXELS) is None


@pytest.mark.parametrize(
    ('format', 'extension', 'params'),
    [
        ('PNG', 'png', {'exif': EXIF}),
        ('GIF', 'gif', {'comment': b'hello'}),
        ('WEBP', 'webp', {'lossless': True, 'exif': EXIF}),
    ],
)
def test_a_png_gif_or_webp_is_kept_as_uploaded_without_metadata(
    format, extension, params
):
    image = gradient() if format != 'GIF' else gradient(mode='RGB').quantize(32)
    upload = encoded(image, format, **params)
    found = kept.keep(upload, False, MAX_PIXELS)
    assert found.extension == extension
    assert kept.MEDIA_TYPES[extension] == f'image/{extension}'
    assert b'Spy Camera' not in found.data and b'hello' not in found.data
    assert len(found.data) < len(upload)
    same_pixels(upload, found.data)


@pytest.mark.parametrize('format', ['BMP', 'TIFF'])
@pytest.mark.parametrize('mode', ['RGBA', 'RGB', 'L', '1', 'P'])
def test_a_bmp_or_tiff_is_kept_as_a_lossless_png(format, mode):
    upload = encoded(gradient(mode=mode), format)
    found = kept.keep(upload, False, MAX_PIXELS)
    assert found.extension == 'png'
    with PIL.Image.open(io.BytesIO(found.data)) as image:
        assert image.format == 'PNG'
        assert not {'exif', 'dpi'} & set(image.info)
    same_pixels(upload, found.data)


def test_a_bmp_with_alpha_keeps_it():
    upload = encoded(gradient(), 'BMP')
    with PIL.Image.open(io.BytesIO(upload)) as image:
        alpha = image.mode == 'RGBA'
    found = kept.keep(upload, False, MAX_PIXELS)
    same_pixels(upload, found.data)
    with PIL.Image.open(io.BytesIO(found.data)) as image:
        assert (image.mode == 'RGBA') == alpha


def test_a_tiff_keeps_its_colour_profile_and_16_bits():
    profile = PIL.ImageCms.ImageCmsProfile(PIL.ImageCms.createProfile('sRGB'))
    image = PIL.Image.new('I;16', (40, 30))
    image.putdata([x * 1000 % 65536 for x in range(40 * 30)])
    upload = encoded(image, 'TIFF', icc_profile=profile.tobytes())
    found = kept.keep(upload, False, MAX_PIXELS)
    with PIL.Image.open(io.BytesIO(found.data)) as png:
        assert png.mode == 'I;16'
        assert png.info['icc_profile'] == profile.tobytes()
        assert png.tobytes() == image.tobytes()


@pytest.mark.parametrize('mode', ['CMYK', 'F', 'I', 'LAB'])
def test_a_tiff_whose_pixels_a_png_cannot_hold_keeps_none(mode):
    image = gradient(mode='RGB')
    image = image.convert('LAB') if mode == 'LAB' else image.convert(mode)
    assert kept.keep(encoded(image, 'TIFF'), False, MAX_PIXELS) is None


def test_a_tiff_of_several_pages_keeps_none():
    pages = encoded(gradient(), 'TIFF', save_all=True, append_images=[gradient()])
    assert kept.keep(pages, False, MAX_PIXELS) is None


def test_a_picture_that_does_not_load_keeps_none():
    upload = encoded(gradient(mode='RGB'), 'BMP')
    assert kept.keep(upload[: len(upload) // 2], False, MAX_PIXELS) is None


def test_out_of_memory_is_not_taken_for_a_bad_picture(monkeypatch):
    def exhausted(image):
        raise MemoryError

    monkeypatch.setattr(decoding, 'upright', exhausted)
    with pytest.raises(MemoryError):
        kept.keep(encoded(gradient(), 'BMP'), False, MAX_PIXELS)


def turned(data):
    """The upload's pixels as they are shown: turned by its EXIF.

    NOTE: Pillow turns some TIFFs itself as it loads them (and drops their
    orientation then).
    """
    with PIL.Image.open(io.BytesIO(data)) as image:
        image.load()
        turn = decoding.upright(image)
        return image.copy() if turn is None else image.transpose(turn)


def test_a_png_to_be_turned_is_kept_upright():
    image = gradient().convert('P')
    upload = encoded(image, 'PNG', exif=TURNED, transparency=5)
    found = kept.keep(upload, True, MAX_PIXELS)
    assert found.extension == 'png'
    with PIL.Image.open(io.BytesIO(found.data)) as png:
        assert png.size == (32, 48)
        assert png.info['transparency'] == 5
        assert 'exif' not in png.info and b'eXIf' not in png_chunks(found.data)
        assert png.convert('RGBA').tobytes() == turned(upload).convert('RGBA').tobytes()


def test_a_tiff_to_be_turned_is_kept_upright():
    upload = encoded(gradient(), 'TIFF', exif=TURNED)
    found = kept.keep(upload, True, MAX_PIXELS)
    with PIL.Image.open(io.BytesIO(found.data)) as png:
        assert png.size == (32, 48)
        assert png.tobytes() == turned(upload).tobytes()


def test_an_apng_or_webp_to_be_turned_keeps_none():
    frames = [gradient(), gradient().rotate(180)]
    apng = encoded(
        frames[0], 'PNG', save_all=True, append_images=frames[1:], exif=TURNED
    )
    webp = encoded(gradient(), 'WEBP', lossless=True, exif=TURNED)
    assert kept.keep(apng, True, MAX_PIXELS) is None
    assert kept.keep(webp, True, MAX_PIXELS) is None


@pytest.mark.parametrize(
    'upload',
    [
        encoded(gradient(), 'PNG')[:60],
        encoded(gradient(mode='RGB').quantize(8), 'GIF')[:-3],
        riff(riff_chunk(b'XMP ', bytes(8))),
    ],
)
def test_a_container_that_cannot_be_rewritten_keeps_none(upload):
    assert kept.keep(upload, False, MAX_PIXELS) is None

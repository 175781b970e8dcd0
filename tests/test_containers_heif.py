"""Metadata removed from HEIC and AVIF files in place, pixels untouched
(asgilook.pictures.containers.strip_heif, and what asgilook.pictures.kept
keeps of them)."""

import io
import struct

import PIL.Image
import pytest

from asgilook.pictures import containers
from asgilook.pictures import kept
from tests.test_containers import EXIF
from tests.test_containers import MAX_PIXELS
from tests.test_containers import TURNED
from tests.test_containers import encoded
from tests.test_containers import gradient

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/'
    b'1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/'
    b'elements/1.1/"><dc:creator>Secret Person</dc:creator></rdf:Description>'
    b'</rdf:RDF></x:xmpmeta>'
)


def pixels(data):
    with PIL.Image.open(io.BytesIO(data)) as image:
        return image.mode, image.size, image.tobytes()


@pytest.mark.parametrize(('format', 'extension'), [('HEIF', 'heic'), ('AVIF', 'avif')])
def test_a_heic_or_avif_loses_its_exif_and_xmp_in_place(format, extension):
    upload = encoded(gradient(), format, exif=EXIF.tobytes(), xmp=XMP, quality=90)
    assert b'Spy Camera' in upload and b'Secret Person' in upload
    assert kept.may_keep(upload)

    found = kept.keep(upload, False, MAX_PIXELS)

    assert found.extension == extension
    assert kept.MEDIA_TYPES[extension] == f'image/{extension}'
    assert b'Spy Camera' not in found.data and b'Secret Person' not in found.data
    # In place: every other byte where it was.
    assert len(found.data) == len(upload)
    pairs = zip(upload, found.data, strict=True)
    changed = [at for at, (a, b) in enumerate(pairs) if a != b]
    assert len(changed) < len(EXIF.tobytes()) + len(XMP) + 16
    with PIL.Image.open(io.BytesIO(found.data)) as image:
        assert not image.info.get('exif') and not image.info.get('xmp')
    assert pixels(found.data) == pixels(upload)


def test_a_heic_to_be_turned_by_its_exif_keeps_none():
    upload = encoded(gradient(), 'HEIF', exif=TURNED.tobytes())
    assert kept.keep(upload, True, MAX_PIXELS) is None


# Files made here, box by box: every way the walk can go.


def box(kind, body):
    return struct.pack('>I', 8 + len(body)) + kind + body


def infe(item, kind, version=2, rest=b'\0'):
    """An item's entry: its ID, protection index, type and name (and ``rest``)."""
    item_id = struct.pack('>H' if version == 2 else '>I', item)
    return box(b'infe', bytes([version, 0, 0, 0]) + item_id + b'\0\0' + kind + rest)


def iinf(*entries, version=0):
    count = struct.pack('>H' if version == 0 else '>I', len(entries))
    return box(b'iinf', bytes([version, 0, 0, 0]) + count + b''.join(entries))


def iloc(*items, version=1):
    """An ``iloc`` of 4-byte offsets and lengths, no base offset and (in
    versions 1 and 2) 4-byte extent indexes; ``items`` are (ID, method,
    [(offset, length), ...])."""
    sizes = 0x4400 | (4 if version else 0)
    body = bytes([version, 0, 0, 0]) + struct.pack('>H', sizes)
    id_format = '>I' if version == 2 else '>H'
    body += struct.pack(id_format, len(items))
    for item, method, extents in items:
        body += struct.pack(id_format, item)
        if version:
            body += struct.pack('>H', method)
        body += b'\0\0' + struct.pack('>H', len(extents))
        for offset, length in extents:
            body += (struct.pack('>I', 0) if version else b'') + struct.pack(
                '>II', offset, length
            )
    return box(b'iloc', body)


FTYP = box(b'ftyp', b'heic\0\0\0\0mif1heic')
SECRET = b'Exif\0\0MM\0*secret-camera'


def heif(*children, data=SECRET):
    """A file: ``ftyp``, a ``meta`` of ``children``, then ``data`` (the first
    item's, at :func:`data_at`) in an ``mdat``."""
    return FTYP + box(b'meta', b'\0\0\0\0' + b''.join(children)) + box(b'mdat', data)


def data_at(*children):
    """Where the ``mdat``'s data starts in :func:`heif` of these children."""
    return len(heif(*children, data=b''))


def placed(*entries, method=0, extents=None, version=1, infos=0, extra=()):
    """A file whose first item (ID 1) is the ``mdat``'s data."""

    def children(at):
        return (
            iinf(*entries, version=infos),
            iloc((1, method, extents or [(at, len(SECRET))]), version=version),
            *extra,
        )

    at = data_at(*children(0))
    return heif(*children(at)), at


@pytest.mark.parametrize('version', [0, 1, 2])
@pytest.mark.parametrize('infos', [0, 1])
def test_an_exif_item_is_hidden_and_zeroed(version, infos):
    entry = infe(1, b'Exif', version=3 if version == 2 else 2)
    upload, at = placed(entry, version=version, infos=infos)
    stripped = containers.strip_heif(upload)
    assert stripped[at : at + len(SECRET)] == bytes(len(SECRET))
    assert b'Exif' not in stripped and containers.HEIF_HIDDEN in stripped
    assert stripped[:at] == upload[:at].replace(b'Exif', containers.HEIF_HIDDEN)


def test_an_xmp_item_is_hidden_and_another_mime_item_is_not():
    xmp = infe(1, b'mime', rest=b'\0application/rdf+xml\0')
    other = infe(2, b'mime', rest=b'\0text/plain\0')
    nameless = infe(3, b'mime', rest=b'')
    picture = infe(4, b'hvc1')
    old = box(b'infe', b'\x01\0\0\0' + b'\0\x05\0\0name\0')
    upload, at = placed(xmp, other, nameless, picture, old)
    stripped = containers.strip_heif(upload)
    assert stripped[at : at + len(SECRET)] == bytes(len(SECRET))
    assert stripped.count(containers.HEIF_HIDDEN) == 1
    assert stripped.count(b'mime') == 2


def test_an_item_that_runs_to_the_end_and_other_items_are_left():
    entries = (infe(1, b'Exif'), infe(2, b'hvc1'))
    at = data_at(iinf(*entries), iloc((1, 0, [(0, 0)]), (2, 0, [(0, 4)])))
    upload = heif(iinf(*entries), iloc((1, 0, [(at + 4, 0)]), (2, 0, [(at, 4)])))
    stripped = containers.strip_heif(upload)
    assert stripped[at : at + 4] == SECRET[:4]
    assert stripped[at + 4 :] == bytes(len(SECRET) - 4)


def test_an_item_in_the_idat_box_is_zeroed_there():
    idat = box(b'idat', SECRET)
    entry = infe(1, b'Exif')
    upload, _ = placed(entry, method=1, extents=[(0, len(SECRET))], extra=[idat])
    stripped = containers.strip_heif(upload)
    assert box(b'idat', bytes(len(SECRET))) in stripped
    # The mdat's bytes are no item's here: left as they are.
    assert stripped.count(SECRET) == 1 and upload.count(SECRET) == 2


def test_a_64_bit_box_size_and_a_box_to_the_end_are_read():
    wide = struct.pack('>I', 1) + b'free' + struct.pack('>Q', 16)
    entry = infe(1, b'Exif')
    at = data_at(wide, iinf(entry), iloc((1, 0, [(0, 1)])))
    # NOTE: The iloc, last in the meta, runs to its end (a size of 0).
    last = struct.pack('>I', 0) + iloc((1, 0, [(at, 4)]))[4:]
    meta = box(b'meta', b'\0\0\0\0' + wide + iinf(entry) + last)
    upload = FTYP + meta + box(b'mdat', SECRET)
    stripped = containers.strip_heif(upload)
    assert stripped[at : at + 4] == bytes(4)


@pytest.mark.parametrize(
    'upload',
    [
        FTYP + box(b'mdat', SECRET),  # No meta.
        FTYP + struct.pack('>I', 4) + b'meta',  # A box smaller than its header.
        heif(box(b'iinf', b''), iloc()),  # An empty iinf.
        heif(iinf(infe(1, b'Exif')), box(b'iloc', b'\x01\0\0\0\x44')),  # Cut short.
        heif(iinf(infe(1, b'Exif'))),  # No iloc.
        placed(infe(1, b'Exif'), method=1)[0],  # In an idat there is not.
        placed(infe(1, b'Exif'), method=2)[0],  # Another construction method.
        placed(infe(1, b'Exif'), extents=[(10**6, 4)])[0],  # Past the end.
        heif(iinf(box(b'free', b'')), iloc()),  # No infe in the iinf.
    ],
    ids=[
        'no-meta', 'small-box', 'empty-iinf', 'short-iloc', 'no-iloc',
        'no-idat', 'method-2', 'past-the-end', 'no-infe',
    ],
)  # fmt: skip
def test_a_heif_that_cannot_be_rewritten_in_place_is_none(upload):
    assert containers.strip_heif(upload) is None
    assert kept.keep(upload, False, MAX_PIXELS) is None


def test_an_uploaded_heic_is_downloaded_as_it_came_without_its_metadata(client):
    upload = encoded(gradient(), 'HEIF', exif=EXIF.tobytes(), xmp=XMP, quality=90)
    document = client.simulate_post(
        '/images', body=upload, params={'name': 'Holiday.HEIC'}
    ).json
    assert document['original'] == f'/images/{document["id"]}/original'

    resp = client.simulate_get(document['original'])

    assert resp.status_code == 200
    assert resp.headers['Content-Type'] == 'image/heic'
    assert resp.headers['Content-Disposition'].startswith(
        'attachment; filename="Holiday.heic"'
    )
    assert len(resp.content) == len(upload)
    assert b'Spy Camera' not in resp.content and b'Secret Person' not in resp.content
    assert pixels(resp.content) == pixels(upload)

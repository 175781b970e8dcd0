"""Disk per picture: what one upload takes in the storage directory, by object.

Run: ``make bench`` (which runs this too), or ``.venv/bin/python bench/disk.py
[--photos DIR] [--json PATH]``.

Every photo of ``../shared/photos/`` (it says so, and stops, when they are not
there) is uploaded to a fresh service: the app itself, in this process
(``falcon.testing``'s conductor, one lifespan, a fake Redis), over an empty
storage directory with its SQLite index. Then each of its thumbnails is
asked for as WebP and as AVIF (``?format=``) until it is served in that
format, as browsers that take them would make them; so every object a
picture may ever have is there. The files that the picture added are sorted
by what they are (the original, the JPEG, WebP and AVIF thumbnails, an
animation) and counted twice: their bytes, and what they occupy on this
file system (``st_blocks``: whole blocks, which small thumbnails waste most
of). The index's share is its row: the bytes of its values, and its id once
more for the index on it. The report shows each as a ratio to the original,
and the whole as a ratio to the upload: the factor of
:data:`asgilook.storage.space.FACTOR`. Encrypted at rest, each object is
a little bigger: that is computed (``sealed_size``), not stored.

Nothing here is timed: the figures are the same on every machine with the
same Pillow (and its libwebp, libavif), and only the block size of the file
system changes the second count.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import pathlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

# NOTE: The project's root, which bench/ is imported from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import falcon.testing  # noqa: E402
import PIL  # noqa: E402

from asgilook.config import Config  # noqa: E402
from asgilook.http.app import create_app  # noqa: E402
from asgilook.storage import space  # noqa: E402
from asgilook.storage.blobs.sealed import sealed_size  # noqa: E402
from asgilook.storage.index.sqlite import SQLiteIndex  # noqa: E402
from bench.common import PHOTOS  # noqa: E402
from bench.common import BenchError  # noqa: E402
from bench.common import guarded  # noqa: E402
from bench.common import progress  # noqa: E402
from bench.common import table  # noqa: E402
from bench.common import write_json  # noqa: E402
from tests.helpers import fake_redis_from_url  # noqa: E402

#: What the files of a picture are, in the order of the report.
KINDS = ('original', 'jpeg', 'webp', 'avif', 'animation', 'index')
LABELS = {
    'original': 'original',
    'jpeg': 'JPEG thumbs',
    'webp': 'WebP thumbs',
    'avif': 'AVIF thumbs',
    'animation': 'animation',
    'index': 'index row',
}
#: The renditions asked for after the upload, as a browser that takes them would.
LATER = ('webp', 'avif')
#: How long a rendition may take to appear (a 20 MP photo's AVIF series: ~1 s).
RENDER_TIMEOUT = 120.0
#: Pictures to plan for, in the report.
PLANNED = (10_000, 100_000, 1_000_000)


@dataclasses.dataclass
class Picture:
    """What one upload took: bytes and blocks by kind."""

    name: str
    pixels: str
    upload: int
    bytes: dict[str, int] = dataclasses.field(default_factory=dict)
    blocks: dict[str, int] = dataclasses.field(default_factory=dict)
    sealed: int = 0

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    @property
    def on_disk(self) -> int:
        return sum(self.blocks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            'photo': self.name,
            'pixels': self.pixels,
            'upload_bytes': self.upload,
            'bytes': self.bytes,
            'on_disk_bytes': self.blocks,
            'total_bytes': self.total,
            'total_on_disk_bytes': self.on_disk,
            'sealed_bytes': self.sealed,
            'ratio_to_upload': self.total / self.upload,
            'ratio_on_disk_to_upload': self.on_disk / self.upload,
        }


def find_photos(folder: pathlib.Path) -> list[pathlib.Path]:
    """Every JPEG in ``folder``; none, and a message, when there is none."""
    found = sorted(folder.glob('*.jpg')) if folder.is_dir() else []
    if not found:
        where = 'no JPEG in' if folder.is_dir() else 'no photos folder at'
        print(f'Nothing measured: {where} {folder}; name another with --photos DIR.')
    return found


def _files(root: pathlib.Path) -> dict[str, os.stat_result]:
    """Every object file under ``root``, by its key."""
    found = {}
    for top in ('images', 'thumbnails'):
        for path in (root / top).rglob('*'):
            if path.is_file():
                found[str(path.relative_to(root))] = path.stat()
    return found


def _kind(key: str) -> str:
    if key.startswith('images/'):
        return 'animation' if key.endswith('.webp') else 'original'
    return key.rsplit('.', 1)[1]


def _index_row(root: pathlib.Path, image_id: str) -> int:
    """The bytes of an image's values in the index, and its id again (the
    UNIQUE index on it); integers as the 8 bytes SQLite may give them."""
    with sqlite3.connect(root / SQLiteIndex.FILE) as connection:
        (size,) = connection.execute(
            'SELECT 2 * length(id) + length(file) + length(token_hash) '
            '+ length(placeholder) + 5 * 8 FROM images WHERE id = ?',
            (image_id,),
        ).fetchone()
    return int(size)


async def _rendered(conductor: Any, uri: str, name: str) -> None:
    """Ask for a thumbnail in format ``name`` until it is served in it."""
    wanted = f'image/{name}'
    deadline = time.monotonic() + RENDER_TIMEOUT
    while True:
        resp = await conductor.simulate_get(uri, params={'format': name})
        if resp.status_code != 200:
            raise BenchError(f'GET {uri}?format={name}: {resp.status_code}')
        if resp.headers['Content-Type'] == wanted:
            return
        if time.monotonic() > deadline:
            raise BenchError(f'{uri} was never served as {name}')
        await asyncio.sleep(0.05)


async def _upload(conductor: Any, root: pathlib.Path, path: pathlib.Path) -> Picture:
    """Upload one photo, have every rendition made, and count what it added."""
    # NOTE: The disk is read in a thread: the app's renders run on this loop.
    data = await asyncio.to_thread(path.read_bytes)
    before = await asyncio.to_thread(_files, root)
    resp = await conductor.simulate_post('/images', body=data)
    if resp.status_code != 201:
        raise BenchError(f'POST {path.name}: {resp.status_code} {resp.text}')
    document = resp.json
    for uri in document['thumbnails']:
        for name in LATER:
            await _rendered(conductor, uri, name)
    width, height = document['size']
    picture = Picture(path.name, f'{width}x{height}', len(data))
    for kind in KINDS:
        picture.bytes[kind] = picture.blocks[kind] = 0
    for key, status in (await asyncio.to_thread(_files, root)).items():
        if key in before:
            continue
        kind = _kind(key)
        picture.bytes[kind] += status.st_size
        picture.blocks[kind] += status.st_blocks * 512
        picture.sealed += sealed_size(status.st_size)
    row = await asyncio.to_thread(_index_row, root, document['id'])
    picture.bytes['index'] = picture.blocks['index'] = row
    picture.sealed += row
    return picture


async def measure(photos: Sequence[pathlib.Path], root: pathlib.Path) -> list[Picture]:
    config = Config()
    config.storage_path = root
    config.redis_from_url = fake_redis_from_url
    app = create_app(config)
    pictures = []
    async with falcon.testing.ASGIConductor(app) as conductor:
        for path in photos:
            progress(f'Uploading {path.name}, and asking for its renditions ...')
            pictures.append(await _upload(conductor, root, path))
    return pictures


def _kb(count: float) -> str:
    return f'{count / 1e3:,.1f}'


def report(pictures: Sequence[Picture], settings: dict[str, Any]) -> None:
    """The table per photo and in total, the ratios, and a plan for N pictures."""
    print(f'Disk per picture ({settings["date"]}, Pillow {settings["pillow"]}):')
    print(
        f'{len(pictures)} photos from {settings["photos"]}, in kB (10^3 bytes); '
        f'file system blocks of {settings["block_size"]} bytes.\n'
    )
    head = ['photo', 'pixels', 'upload', *(LABELS[kind] for kind in KINDS)]
    lines: list[list[Any]] = [[*head, 'total', 'on disk', 'total/upload']]
    every = Picture('all', '', sum(picture.upload for picture in pictures))
    for kind in KINDS:
        every.bytes[kind] = sum(picture.bytes[kind] for picture in pictures)
        every.blocks[kind] = sum(picture.blocks[kind] for picture in pictures)
    every.sealed = sum(picture.sealed for picture in pictures)
    for picture in [*pictures, every]:
        lines.append(
            [
                picture.name,
                picture.pixels,
                _kb(picture.upload),
                *(_kb(picture.bytes[kind]) for kind in KINDS),
                _kb(picture.total),
                _kb(picture.on_disk),
                f'{picture.total / picture.upload:.3f}',
            ]
        )
    print(table(lines, right=True))
    original = every.bytes['original']
    print('\nAs a ratio to the original (all photos):')
    ratios = [['kind', 'bytes', 'on disk']]
    for kind in KINDS:
        ratios.append(
            [
                LABELS[kind],
                f'{every.bytes[kind] / original:.4f}',
                f'{every.blocks[kind] / original:.4f}',
            ]
        )
    ratios.append(
        ['total', f'{every.total / original:.4f}', f'{every.on_disk / original:.4f}']
    )
    print(table(ratios, right=True))
    worst = max(picture.on_disk / picture.upload for picture in pictures)
    print(
        f'\nOn disk per upload byte: {every.on_disk / every.upload:.3f} on average, '
        f'{worst:.3f} at most (asgilook.storage.space.FACTOR is {space.FACTOR:g}).'
    )
    print(
        f'Encrypted at rest: {every.sealed / every.total:.5f} times the bytes '
        '(sealed_size of every object).'
    )
    average = every.on_disk / len(pictures)
    print(
        f'The index file: {_kb(settings["index_file_bytes"])} kB for '
        f'{len(pictures)} pictures (its pages, and the WAL beside it).'
    )
    print(f'\nPlanning, at {average / 1e6:.2f} MB on disk per picture of these:')
    for count in PLANNED:
        print(f'  {count:>9,} pictures: {average * count / 1e9:,.1f} GB')


def run(args: argparse.Namespace, photos: Sequence[pathlib.Path]) -> int:
    settings: dict[str, Any] = {
        'date': time.strftime('%Y-%m-%d %H:%M'),
        'python': sys.version.split()[0],
        'pillow': PIL.__version__,
        'photos': str(args.photos),
        'factor': space.FACTOR,
    }
    with tempfile.TemporaryDirectory(prefix='asgilook-disk-') as tmp:
        root = pathlib.Path(tmp) / 'storage'
        pictures = asyncio.run(measure(photos, root))
        settings['block_size'] = os.statvfs(root).f_frsize
        settings['index_file_bytes'] = sum(
            path.stat().st_size for path in root.glob(f'{SQLiteIndex.FILE}*')
        )
    report(pictures, settings)
    if args.json:
        write_json(
            args.json,
            {
                'settings': settings,
                'pictures': [picture.as_json() for picture in pictures],
            },
        )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--photos', type=pathlib.Path, default=PHOTOS, help=f'default: {PHOTOS}'
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    args = parse_args(argv)
    photos = find_photos(args.photos)
    if not photos:
        return 0
    return guarded('bench/disk.py', lambda: run(args, photos))


if __name__ == '__main__':
    sys.exit(main())

"""Peak memory of storing a 50-megapixel upload: the pipeline against the tutorial's.

Run as ``.venv/bin/python bench/memory.py``. Each case is converted twice, each
time in a fresh Python process: once by ``asgilook.pictures.pixels.ingest`` (what an
upload costs: the decode, the original and the whole thumbnail series) and
once by the tutorial app's three lines (``Image.open``, ``convert('RGB')``,
``save``), which make no thumbnails. The child reports its peak resident
memory (``VmHWM``) before and after the conversion; the table shows what the
conversion added, and the ratio of the two. The pictures are generated here,
at 8660x5773 pixels (just under the default ``max_pixels`` of 50 million); the
real photos in ``../shared/photos/`` are added when that folder exists.

This is not a test: nothing is asserted, and figures vary from machine to
machine. Compare the ratios, which are measured in one run.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import sys
import tempfile
import time

import PIL.Image
import PIL.ImageDraw

# NOTE: The project's root, which bench/ is imported from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.common import PHOTOS
from bench.common import child_json

SIZE = (8660, 5773)


def _peak_mib() -> float:
    """The process's peak resident memory so far, in MiB.

    NOTE: VmHWM rather than ru_maxrss: Linux carries ru_maxrss over from the
    parent through fork and exec, so a child of this (large) process would
    start at the parent's peak.
    """
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmHWM in /proc/self/status: this needs Linux')


def _tutorial(data: bytes) -> None:
    """The tutorial app's conversion, as its Store.save does it."""
    image = PIL.Image.open(io.BytesIO(data))
    rgb_image = image.convert('RGB')
    converted = io.BytesIO()
    rgb_image.save(converted, 'JPEG')


def _pipeline(data: bytes) -> None:
    from asgilook.pictures import pixels

    pixels.ingest(data, 50_000_000, 64)


def child(method: str, path: str) -> None:
    """Convert one file and print what it cost, as JSON."""
    import asgilook.pictures.pixels  # noqa: F401  (imported before measuring, as in the app)

    data = pathlib.Path(path).read_bytes()
    before = _peak_mib()
    started = time.perf_counter()
    {'tutorial': _tutorial, 'pipeline': _pipeline}[method](data)
    seconds = time.perf_counter() - started
    print(json.dumps({'before': before, 'after': _peak_mib(), 'seconds': seconds}))


def _measure(method: str, path: pathlib.Path) -> dict[str, float]:
    result: dict[str, float] = child_json(
        [sys.executable, __file__, '--child', method, str(path)]
    )
    return result


def _scene(mode: str = 'RGB') -> PIL.Image.Image:
    """A smooth picture with some edges, so that it compresses like a photo."""
    small = (SIZE[0] // 8, SIZE[1] // 8)
    red = PIL.Image.linear_gradient('L').resize(small)
    green = PIL.Image.radial_gradient('L').resize(small)
    blue = PIL.Image.linear_gradient('L').rotate(90).resize(small)
    image = PIL.Image.merge('RGB', (red, green, blue))
    draw = PIL.ImageDraw.Draw(image)
    for step in range(0, small[0], 97):
        draw.ellipse((step, step // 3, step + 180, step // 3 + 120), outline='white')
    image = image.resize(SIZE, PIL.Image.Resampling.BICUBIC)
    if mode == 'RGBA':
        image.putalpha(PIL.Image.radial_gradient('L').resize(SIZE))
    return image


def _cases(folder: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    made = [
        ('50 MP JPEG', 'scene.jpg', _scene(), 'JPEG', {'quality': 90}),
        ('50 MP JPEG, EXIF orientation 6', 'turned.jpg', _scene(), 'JPEG',
         {'quality': 90, 'exif': exif.tobytes()}),
        ('50 MP PNG, RGBA', 'scene.png', _scene('RGBA'), 'PNG', {'compress_level': 1}),
    ]  # fmt: skip
    cases = []
    for name, filename, image, format, params in made:
        path = folder / filename
        image.save(path, format, **params)
        cases.append((name, path))
    if PHOTOS.is_dir():
        for photo in sorted(PHOTOS.glob('*.jpg')):
            cases.append((f'photo {photo.name}', photo))
    else:
        print(f'{PHOTOS} is absent: only generated pictures are measured.\n')
    return cases


def main() -> None:
    """Measure every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--child', nargs=2, metavar=('METHOD', 'PATH'))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with tempfile.TemporaryDirectory(prefix='asgilook-bench-') as folder:
        cases = _cases(pathlib.Path(folder))
        header = (
            f'{"case":<34} {"pixels":>11} {"upload":>9} {"tutorial":>9} '
            f'{"pipeline":>9} {"ratio":>6} {"s tut.":>7} {"s pipe.":>7}'
        )
        print(header)
        print('-' * len(header))
        for name, path in cases:
            with PIL.Image.open(path) as image:
                width, height = image.size
            tutorial = _measure('tutorial', path)
            pipeline = _measure('pipeline', path)
            added = {
                result: run['after'] - run['before']
                for result, run in (('tutorial', tutorial), ('pipeline', pipeline))
            }
            print(
                f'{name:<34} {width * height / 1e6:>9.1f}MP '
                f'{path.stat().st_size / 2**20:>6.1f}MiB '
                f'{added["tutorial"]:>6.0f}MiB {added["pipeline"]:>6.0f}MiB '
                f'{added["pipeline"] / added["tutorial"]:>6.2f} '
                f'{tutorial["seconds"]:>7.2f} {pipeline["seconds"]:>7.2f}'
            )
        print(
            '\nMemory added by the conversion (peak RSS after it, minus before it, '
            'in a fresh process each); ratio = pipeline / tutorial.'
        )


if __name__ == '__main__':
    main()

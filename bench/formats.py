"""Thumbnail formats: bytes against visual equality, to choose each quality.

Run: ``make bench`` (which runs this too), or ``.venv/bin/python
bench/formats.py [--photos DIR] [--json PATH]``. It needs NumPy (the
``bench`` extra: ``pip install -e '.[bench]'``, which ``make bench`` does).

For every photo in ``../shared/photos/`` (it says so, and stops, when they
are not there) and each of its thumbnail sizes, the reference is a Lanczos
resize of the whole decoded photo. The JPEG thumbnail at the service's
quality (85) is encoded and its SSIM against the reference measured (on
luma, the usual 11x11 Gaussian window). Then, for WebP and AVIF, every
quality from low to high until one reaches the JPEG's SSIM: the lowest
such quality, per thumbnail. Finally the qualities the service uses
(``asgilook.pictures.renditions``) are measured over every thumbnail: total bytes
against the JPEG's, the thumbnails that fall short of the JPEG's SSIM, and
encoding time. Nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy  # noqa: E402
import PIL.Image  # noqa: E402

from asgilook.pictures import pixels  # noqa: E402
from asgilook.pictures import renditions  # noqa: E402
from bench.common import PHOTOS  # noqa: E402

SEARCHED = {
    renditions.WEBP: range(50, 101, 5),
    renditions.AVIF: range(30, 101, 5),
}
USED = {
    renditions.WEBP: renditions.WEBP_QUALITY,
    renditions.AVIF: renditions.AVIF_QUALITY,
}


def _window() -> numpy.ndarray:
    offsets = numpy.arange(-5, 6)
    weights = numpy.exp(-(offsets**2) / (2 * 1.5**2))
    return weights / weights.sum()


WINDOW = _window()


def _blur(plane: numpy.ndarray) -> numpy.ndarray:
    """The 11x11 Gaussian (sigma 1.5) of SSIM, as two 1-D passes, valid part only."""
    rows = numpy.apply_along_axis(numpy.convolve, 1, plane, WINDOW, 'valid')
    return numpy.apply_along_axis(numpy.convolve, 0, rows, WINDOW, 'valid')


def luma(image: PIL.Image.Image) -> numpy.ndarray:
    return numpy.asarray(image.convert('L'), dtype=numpy.float64)


def ssim(reference: numpy.ndarray, other: numpy.ndarray) -> float:
    """The mean structural similarity of two luma planes (Wang et al., 2004)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mean_a, mean_b = _blur(reference), _blur(other)
    var_a = _blur(reference * reference) - mean_a**2
    var_b = _blur(other * other) - mean_b**2
    covariance = _blur(reference * other) - mean_a * mean_b
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(index.mean())


def encode(image: PIL.Image.Image, name: str, quality: int) -> tuple[bytes, float]:
    started = time.perf_counter()
    output = io.BytesIO()
    if name == renditions.JPEG:
        image.save(output, 'JPEG', quality=quality)
    elif name == renditions.AVIF:
        image.save(output, 'AVIF', quality=quality, speed=renditions.AVIF_SPEED)
    else:
        image.save(output, 'WEBP', quality=quality, method=renditions.WEBP_METHOD)
    return output.getvalue(), time.perf_counter() - started


def decoded(data: bytes) -> numpy.ndarray:
    return luma(PIL.Image.open(io.BytesIO(data)))


def measure(photo: pathlib.Path) -> list[dict[str, Any]]:
    full = PIL.Image.open(photo)
    full.load()
    full = full.convert('RGB')
    rows = []
    for size in pixels.thumbnail_sizes(full.size, 64)[:4]:
        reference_image = full.resize(size, PIL.Image.Resampling.LANCZOS)
        reference = luma(reference_image)
        jpeg, jpeg_time = encode(reference_image, renditions.JPEG, 85)
        target = ssim(reference, decoded(jpeg))
        row: dict[str, Any] = {
            'photo': photo.name,
            'size': f'{size[0]}x{size[1]}',
            'jpeg_bytes': len(jpeg),
            'jpeg_ssim': target,
            'jpeg_ms': jpeg_time * 1000,
        }
        for name in (renditions.WEBP, renditions.AVIF):
            lowest = None
            for quality in SEARCHED[name]:
                data, _ = encode(reference_image, name, quality)
                if ssim(reference, decoded(data)) >= target:
                    lowest = quality
                    break
            used, seconds = encode(reference_image, name, USED[name])
            row[f'{name}_lowest_quality'] = lowest
            row[f'{name}_bytes'] = len(used)
            row[f'{name}_ssim'] = ssim(reference, decoded(used))
            row[f'{name}_ms'] = seconds * 1000
        rows.append(row)
        print(
            f'{photo.name:>14} {row["size"]:>10}  JPEG {len(jpeg):>7,} B '
            f'SSIM {target:.4f} | '
            + ' | '.join(
                f'{name.upper()} q{USED[name]} {row[f"{name}_bytes"]:>7,} B '
                f'SSIM {row[f"{name}_ssim"]:.4f} '
                f'(lowest equal: q{row[f"{name}_lowest_quality"]})'
                for name in (renditions.WEBP, renditions.AVIF)
            ),
            flush=True,
        )
    return rows


def summary(rows: list[dict[str, Any]]) -> None:
    print()
    print('format  quality  bytes vs JPEG q85  below its SSIM  median lowest  encode')
    jpeg_total = sum(int(row['jpeg_bytes']) for row in rows)
    for name in (renditions.WEBP, renditions.AVIF):
        total = sum(int(row[f'{name}_bytes']) for row in rows)
        short = sum(
            1 for row in rows if float(row[f'{name}_ssim']) < float(row['jpeg_ssim'])
        )
        lowest = [row[f'{name}_lowest_quality'] for row in rows]
        found = sorted(int(value) for value in lowest if value is not None)
        median = statistics.median(found) if found else None
        encode_ms = sum(float(row[f'{name}_ms']) for row in rows)
        print(
            f'{name.upper():6}  q{USED[name]:<6}  {total / jpeg_total:>17.2f}  '
            f'{short:>5} of {len(rows):<6}  {median!s:>13}  {encode_ms:,.0f} ms'
        )
    print(f'JPEG    q85      {1:>17.2f}  (the reference)  {jpeg_total:,} bytes in all')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--photos', type=pathlib.Path, default=PHOTOS)
    parser.add_argument('--json', type=pathlib.Path)
    args = parser.parse_args()
    photos = sorted(args.photos.glob('*.jpg'))
    if not photos:
        print(f'No photos in {args.photos}: nothing to measure.')
        return 0
    rows = [row for photo in photos for row in measure(photo)]
    summary(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Lighthouse benchmark: the gallery and a picture's page, as Lighthouse scores them.

Run: ``make bench`` (which runs this too), or ``.venv/bin/python
bench/lighthouse.py [--photos DIR] [--pictures N] [--cold] [--reports DIR]
[--json PATH]``.

Issue 19 asks for Lighthouse's accessibility and best practices at 100 and
its performance at 95 or more on mobile. This measures that, on a real
service: a fresh ``redis-server`` and one ``python -m uvicorn`` worker of
``asgilook.asgi:app`` (started as ``bench/serving.py`` starts them), holding
about as many pictures as the gallery's first page shows (:data:`PICTURES`,
one more than a page, so that the page has a next one), uploaded as a
browser uploads them: a form, each with a file name.

The pictures are crops of mixed shapes (landscape, portrait, square,
panorama) of the photos of ``../shared/photos/``, a few megapixels each, as
a phone's would be. When that folder is absent this says so, and draws them
instead (``tests.helpers.draw_image``: yellow ellipses, much smaller files,
so the figures are then kinder than real photos make them).

Lighthouse is npm's ``lighthouse`` at :data:`LIGHTHOUSE_VERSION` (13 needs
Node 22), installed on the first run into ``bench/.lighthouse/`` (git-ignored),
and runs Debian's Chromium, headless. Each of ``/`` and one
``/pictures/{id}`` is measured twice: with Lighthouse's default, a
mid-range phone on a slow 4G network (simulated throttling), and with its
desktop preset. Every category's score is reported, with the audits that
fail (a binary audit short of passing, any other scored below 0.9) and the
metrics behind the performance score.

Before Lighthouse runs, every rendition of every picture is asked for once,
with the ``Accept`` header Chromium sends for an ``<img>``, so that what is
measured is the page and not the first making of its thumbnails (a cold
thumbnail is ``bench/serving.py``'s to measure); ``--cold`` skips that.

The machine is small and shared, and Lighthouse's performance score moves
by a few points from run to run with the load on it; the load average is in
the report. Nothing here is a timed assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

# NOTE: The project's root, which bench/ is imported from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import PIL.Image

from asgilook.pictures import renditions
from bench.common import BENCH
from bench.common import PHOTOS
from bench.common import BenchError
from bench.common import guarded
from bench.common import progress
from bench.common import table
from bench.common import write_json
from bench.serving_measure import expect
from bench.serving_setup import Lab
from bench.serving_setup import Target
from tests.helpers import draw_image

LIGHTHOUSE_VERSION = '12.2.3'
#: Where Lighthouse is installed, git-ignored.
LIGHTHOUSE_DIR = BENCH / '.lighthouse'
LIGHTHOUSE = LIGHTHOUSE_DIR / 'node_modules' / '.bin' / 'lighthouse'
CHROMIUM = pathlib.Path('/usr/bin/chromium')
CHROME_FLAGS = '--headless=new --no-sandbox'
#: Lighthouse's four categories, in the order of its report.
CATEGORIES = ('performance', 'accessibility', 'best-practices', 'seo')
#: The metrics the performance score is made of.
METRICS = (
    'first-contentful-paint',
    'largest-contentful-paint',
    'total-blocking-time',
    'cumulative-layout-shift',
    'speed-index',
)
#: The form factors: Lighthouse's default (a phone), and its desktop preset.
FORM_FACTORS = {'mobile': (), 'desktop': ('--preset=desktop',)}
#: The gallery's first page holds 30 pictures (gallery.js's PAGE_SIZE).
PICTURES = 33
#: The shapes of the pictures, width to height, in turn.
SHAPES = ((3, 2), (4, 3), (2, 3), (1, 1), (16, 9), (3, 4), (4, 1), (9, 16))
#: The longer side of a picture cut from a photo, in pixels.
LONG_SIDES = (4000, 3000, 2400)
#: The synthetic pictures' longer side: draw_image is slow on large ones.
DRAWN_SIDE = 1600
#: What Chromium sends for an ``<img>``: the formats the warm-up asks for.
IMG_ACCEPT = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8'
#: How long the warm-up may take, in seconds: AVIF is slow to make.
WARM_TIMEOUT = 600
#: How long one Lighthouse run may take, in seconds.
RUN_TIMEOUT = 300
#: What issue 19 asks for: the least score, by category, on mobile.
TARGETS = {'performance': 95, 'accessibility': 100, 'best-practices': 100}


def ensure_lighthouse() -> str:
    """Lighthouse's version, installed with npm first if it is not there."""
    installed = LIGHTHOUSE_DIR / 'node_modules' / 'lighthouse' / 'package.json'
    if installed.is_file():
        version = json.loads(installed.read_text()).get('version')
        if version == LIGHTHOUSE_VERSION and LIGHTHOUSE.is_file():
            return LIGHTHOUSE_VERSION
    npm = shutil.which('npm')
    if npm is None:
        raise BenchError('npm is not on PATH: it installs Lighthouse (apt-get npm).')
    progress(
        f'Installing lighthouse@{LIGHTHOUSE_VERSION} with npm into {LIGHTHOUSE_DIR} '
        '(this once) ...'
    )
    LIGHTHOUSE_DIR.mkdir(exist_ok=True)
    done = subprocess.run(
        [
            npm, 'install', '--exact', '--no-audit', '--no-fund',
            '--prefix', str(LIGHTHOUSE_DIR), f'lighthouse@{LIGHTHOUSE_VERSION}',
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode != 0 or not LIGHTHOUSE.is_file():
        raise BenchError(f'npm could not install Lighthouse:\n{done.stderr.strip()}')
    return LIGHTHOUSE_VERSION


# The pictures


def _cut(photo: PIL.Image.Image, shape: tuple[int, int], long_side: int) -> bytes:
    """A crop of ``photo`` of ``shape``, scaled to ``long_side``, as a JPEG."""
    width, height = photo.size
    ratio = shape[0] / shape[1]
    crop = (width, round(width / ratio))
    if crop[1] > height:
        crop = (round(height * ratio), height)
    # NOTE: Seeded by the shape: the same crops every run.
    rng = random.Random(f'{shape}{long_side}')
    left = rng.randint(0, width - crop[0])
    top = rng.randint(0, height - crop[1])
    picture = photo.crop((left, top, left + crop[0], top + crop[1]))
    scale = min(1.0, long_side / max(crop))
    size = (round(crop[0] * scale), round(crop[1] * scale))
    output = io.BytesIO()
    picture.resize(size, PIL.Image.Resampling.LANCZOS).save(output, 'JPEG', quality=88)
    return output.getvalue()


def make_pictures(folder: pathlib.Path, count: int) -> list[tuple[str, bytes]]:
    """``count`` pictures of mixed shapes: their file names and bytes.

    Cut from the photos of ``folder``; drawn, and said so, if it has none.
    """
    photos = sorted(folder.glob('*.jpg')) if folder.is_dir() else []
    if not photos:
        progress(
            f'No photos in {folder}: drawing {count} synthetic pictures instead '
            '(smaller files than photos; name a folder with --photos DIR).'
        )
        return [
            (
                f'drawing {number + 1:02} {shape[0]}x{shape[1]}.jpg',
                draw_image(
                    _sized(shape, DRAWN_SIDE),
                    format='JPEG',
                    rng=random.Random(number),
                ),
            )
            for number, shape in _shapes(count)
        ]
    progress(f'Cutting {count} pictures from the {len(photos)} photos of {folder} ...')
    opened = [PIL.Image.open(path) for path in photos]
    for image in opened:
        image.draft('RGB', (image.width // 2, image.height // 2))
    pictures = []
    for number, shape in _shapes(count):
        photo = opened[number % len(opened)]
        long_side = LONG_SIDES[number % len(LONG_SIDES)]
        stem = photos[number % len(photos)].stem
        name = f'{stem} {number + 1:02} {shape[0]}x{shape[1]}.jpg'
        pictures.append((name, _cut(photo, shape, long_side)))
    return pictures


def _shapes(count: int) -> list[tuple[int, tuple[int, int]]]:
    return [(number, SHAPES[number % len(SHAPES)]) for number in range(count)]


def _sized(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    scale = long_side / max(shape)
    return round(shape[0] * scale), round(shape[1] * scale)


def upload_all(
    target: Target, pictures: Sequence[tuple[str, bytes]]
) -> list[dict[str, Any]]:
    """Upload each picture as the gallery's form does; their documents."""
    progress(f'Uploading {len(pictures)} pictures ...')
    documents = []
    for name, data in pictures:
        resp = target.client.post(
            '/images',
            data={'visibility': 'public'},
            files={'image': (name, data, 'image/jpeg')},
        )
        expect(resp, 201, f'POST /images ({name})')
        documents.append(resp.json())
    return documents


def warm(target: Target, documents: Sequence[dict[str, Any]]) -> int:
    """Ask for every rendition as Chromium does, each thumbnail until it comes
    in the format Chromium is to get; how many renditions there were.

    NOTE: A thumbnail first asked for in a format it has not been made in yet
    comes as a JPEG while the format's series is made in the background.
    """
    wanted = renditions.MEDIA_TYPES[renditions.negotiate(IMG_ACCEPT)]
    uris = {
        source.split(' ')[0]
        for document in documents
        for source in document['srcset'].split(', ')
    }
    progress(f'Asking for {len(uris)} renditions as Chromium does, until {wanted} ...')
    deadline = time.monotonic() + WARM_TIMEOUT
    for uri in sorted(uris):
        while True:
            resp = target.client.get(uri, headers={'Accept': IMG_ACCEPT})
            expect(resp, 200, f'GET {uri}')
            if not uri.startswith('/thumbnails/'):
                break
            if resp.headers['Content-Type'] == wanted:
                break
            if time.monotonic() > deadline:
                raise BenchError(f'{uri} was not served as {wanted} in time')
            time.sleep(0.2)
    return len(uris)


# Lighthouse


def lighthouse(url: str, form_factor: str, report_path: pathlib.Path) -> Any:
    """Run Lighthouse on ``url``; its JSON report (also kept at ``report_path``)."""
    env = dict(os.environ, CHROME_PATH=str(CHROMIUM))
    args = [
        str(LIGHTHOUSE), url,
        '--output=json', f'--output-path={report_path}', '--quiet',
        f'--chrome-flags={CHROME_FLAGS}', *FORM_FACTORS[form_factor],
    ]  # fmt: skip
    try:
        done = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as ex:
        raise BenchError(f'Lighthouse took over {RUN_TIMEOUT} s on {url}') from ex
    if done.returncode != 0 or not report_path.is_file():
        said = done.stderr.strip()[-3000:]
        raise BenchError(f'Lighthouse failed on {url} ({form_factor}):\n{said}')
    report = json.loads(report_path.read_text())
    if report.get('runtimeError'):
        raise BenchError(f'Lighthouse on {url}: {report["runtimeError"]}')
    return report


def failing(report: Any) -> list[dict[str, Any]]:
    """The audits of ``report`` that fail: id, title, score and what it says.

    A binary audit fails short of 1; a scored one (a metric, an opportunity)
    below 0.9, where Lighthouse stops showing it as passed. Informative,
    manual and not applicable audits have no score and never fail.
    """
    ids = {
        ref['id']
        for category in report['categories'].values()
        for ref in category['auditRefs']
    }
    found = []
    for audit_id in sorted(ids):
        audit = report['audits'][audit_id]
        score = audit.get('score')
        if score is None:
            continue
        passing = 1.0 if audit.get('scoreDisplayMode') == 'binary' else 0.9
        if score < passing:
            found.append(
                {
                    'id': audit_id,
                    'title': audit.get('title', ''),
                    'score': score,
                    'display': audit.get('displayValue', ''),
                }
            )
    return found


def summarize(report: Any, page: str, form_factor: str) -> dict[str, Any]:
    """What the benchmark keeps of one Lighthouse report."""
    audits = report['audits']
    return {
        'page': page,
        'url': report['finalDisplayedUrl'],
        'form_factor': form_factor,
        'scores': {
            name: round(100 * report['categories'][name]['score'])
            for name in CATEGORIES
        },
        'metrics': {
            name: {
                'value': audits[name].get('numericValue'),
                'display': audits[name].get('displayValue', ''),
                'score': audits[name].get('score'),
            }
            for name in METRICS
        },
        'failing': failing(report),
        # NOTE: Lighthouse 12 cannot read every part of a newer Chromium's
        #   trace: the audits that need it error, and count for nothing.
        'errors': sorted(
            audit_id
            for audit_id, audit in audits.items()
            if audit.get('scoreDisplayMode') == 'error'
        ),
        'warnings': report.get('runWarnings', []),
        'benchmark_index': report['environment'].get('benchmarkIndex'),
    }


# The report


def report(results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> None:
    """Print the scores, the metrics, the failing audits and the verdict."""
    print(
        f'Lighthouse {settings["lighthouse"]}, {settings["chromium"]}; '
        f'{settings["pictures"]} pictures ({settings["source"]}); renditions '
        f'{"not warmed" if settings["cold"] else "made before"}; load average '
        f'{settings["load_before"][0]:.2f} before, {settings["load_after"][0]:.2f} '
        'after\n'
    )
    rows: list[list[Any]] = [['page', 'form factor', *CATEGORIES]]
    rows += [
        [result['page'], result['form_factor'], *result['scores'].values()]
        for result in results
    ]
    print(table(rows), end='\n\n')
    rows = [['page', 'form factor', 'FCP', 'LCP', 'TBT', 'CLS', 'SI']]
    for result in results:
        values = [result['metrics'][name]['display'] for name in METRICS]
        rows.append([result['page'], result['form_factor'], *values])
    print(table(rows), end='\n\n')
    rows = [['page', 'form factor', 'failing audit', 'score', 'it says']]
    for result in results:
        where = [result['page'], result['form_factor']]
        rows += [
            [*where, audit['id'], audit['score'], audit['display'] or audit['title']]
            for audit in result['failing']
        ]
    print(table(rows) if len(rows) > 1 else 'No audit fails.', end='\n\n')
    for result in results:
        label = f'{result["page"]} ({result["form_factor"]})'
        if result['errors']:
            print(f'{label}: audits that errored: {", ".join(result["errors"])}')
        for warning in result['warnings']:
            print(f'{label}: warning: {warning}')
    for result in results:
        if result['form_factor'] == 'mobile':
            short = [
                f'{name} {result["scores"][name]} < {least}'
                for name, least in TARGETS.items()
                if result['scores'][name] < least
            ]
            verdict = 'short: ' + ', '.join(short) if short else 'meets issue 19'
            print(f'{result["page"]} on mobile: {verdict}')


def measure(
    lab: Lab, args: argparse.Namespace, reports: pathlib.Path
) -> list[dict[str, Any]]:
    """Start the service, fill it, run Lighthouse on each page and form factor."""
    pictures = make_pictures(args.photos, args.pictures)
    progress('Starting redis-server and uvicorn ...')
    target = lab.asgilook('asgilook')
    documents = upload_all(target, pictures)
    if not args.cold:
        warm(target, documents)
    # The first picture uploaded: a landscape one, 3:2.
    pages = {'/': '/', '/pictures/{id}': documents[0]['page']}
    for path in pages.values():
        expect(target.client.get(path), 200, f'GET {path}')
    results = []
    for page, path in pages.items():
        for form_factor in FORM_FACTORS:
            progress(f'Lighthouse: {page} ({form_factor}) ...')
            name = 'gallery' if page == '/' else 'picture'
            report_path = reports / f'{name}-{form_factor}.json'
            found = lighthouse(target.server.url + path, form_factor, report_path)
            results.append(summarize(found, page, form_factor))
    progress('Stopping every process ...')
    return results


def run(args: argparse.Namespace) -> int:
    """Install, start, measure, stop, report; the exit status."""
    if not CHROMIUM.is_file():
        raise BenchError(f'No Chromium at {CHROMIUM} (apt-get install chromium).')
    version = ensure_lighthouse()
    chromium = subprocess.run(
        [str(CHROMIUM), '--version'], capture_output=True, text=True
    ).stdout.strip()
    settings: dict[str, Any] = {
        'lighthouse': version,
        'chromium': chromium,
        'chrome_flags': CHROME_FLAGS,
        'pictures': args.pictures,
        'source': str(args.photos) if any(args.photos.glob('*.jpg')) else 'drawn',
        'cold': args.cold,
        'cpus': os.cpu_count(),
        'load_before': os.getloadavg(),
    }
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix='asgilook-lh-'))
        reports = args.reports or pathlib.Path(tmp)
        reports.mkdir(parents=True, exist_ok=True)
        lab = Lab(stack, pathlib.Path(tmp))
        try:
            results = measure(lab, args, reports)
        except BenchError as ex:
            raise BenchError(f'{ex}{lab.logs()}') from ex
    settings['load_after'] = os.getloadavg()
    report(results, settings)
    if args.reports:
        print(f'\nLighthouse reports kept in {args.reports}')
    if args.json:
        write_json(args.json, {'settings': settings, 'results': results})
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--photos', type=pathlib.Path, default=PHOTOS, help=f'default: {PHOTOS}'
    )
    parser.add_argument(
        '--pictures', type=int, default=PICTURES, help=f'default: {PICTURES}'
    )
    parser.add_argument(
        '--cold',
        action='store_true',
        help='do not ask for every rendition before Lighthouse runs',
    )
    parser.add_argument(
        '--reports',
        type=pathlib.Path,
        metavar='DIR',
        help="keep Lighthouse's own JSON reports here",
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    if args.pictures < 1:
        parser.error('--pictures must be at least 1')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    return guarded('bench/lighthouse.py', lambda: run(parse_args(argv)))


if __name__ == '__main__':
    sys.exit(main())

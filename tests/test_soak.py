"""A short soak with faults: bench/soak.py's engine for half a minute.

Real redis-server and ``uvicorn --workers 2``, steady mixed load, Redis
restarted and a worker killed with SIGKILL in the middle; see bench/soak.py
for what is checked. ``make soak`` runs it for minutes, with stricter limits
on memory.
"""

import importlib.util
import pathlib
import sys

import pytest

pytestmark = pytest.mark.e2e

SOAK = pathlib.Path(__file__).parent.parent / 'bench' / 'soak.py'


def load_engine():
    spec = importlib.util.spec_from_file_location('soak', SOAK)
    module = importlib.util.module_from_spec(spec)
    # NOTE: Its dataclasses look their module up in sys.modules.
    sys.modules.setdefault('soak', module)
    spec.loader.exec_module(module)
    return module


def test_a_short_soak_with_redis_restarted_and_a_worker_killed():
    soak = load_engine()
    # NOTE: Too short for a memory trend to mean much: RSS may grow by up to
    #   200 MB a minute (a leak of a whole response a request would still be
    #   caught), descriptors by up to 50 (one leaked per request would be).
    options = soak.Options(
        duration=28, warmup=3, rewarm=2, min_samples=6, rss_slope=200, fd_growth=50
    )
    report = soak.run(options)
    print(soak.render(report))

    assert report['failures'] == []
    assert report['passed']
    # Not vacuous: everything was done, in numbers, and the faults happened.
    routes = report['routes']
    assert routes['POST upload']['outcomes'].get('201', 0) >= 15
    assert routes['DELETE delete']['outcomes'].get('204', 0) >= 4
    reads = sum(
        count
        for route, figures in routes.items()
        if route.startswith(('GET', 'HEAD'))
        for outcome, count in figures['outcomes'].items()
        if outcome in ('200', '304')
    )
    assert reads >= 300
    assert routes['GET conditional']['outcomes'].get('304', 0) >= 10
    assert report['events']['image-created'] >= 10
    assert report['events']['image-deleted'] >= 2
    assert report['cache'].get('Bypass', 0) or report['events'].get('unavailable')
    assert report['cache'].get('Hit', 0) > 0
    assert set(report['windows']) == {'redis', 'kill'}
    assert report['replacement'] and report['killed'] not in report['replacement']
    assert report['final']['listed'] >= 5

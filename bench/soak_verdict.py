"""The soak's verdict: what in a run's record fails it (see ``bench/soak.py``)."""

from __future__ import annotations

import collections
import math
import signal
from typing import Any

from bench.soak_engine import Call
from bench.soak_engine import Options
from bench.soak_engine import Soak

READS = ('GET', 'HEAD')


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def classify(soak: Soak, call: Call) -> tuple[str, str] | None:
    """What went wrong with ``call`` and where (``OUTSIDE`` and ``READ`` fail
    the run, as every ``wrong`` does); None if nothing did."""
    status = call.status
    if status is None:
        if soak.in_window('kill', call.end, call.end):
            return 'transport', 'kill window'
        return 'transport', 'OUTSIDE'
    if status >= 500:
        if call.method in READS:
            return '5xx', 'READ'
        if soak.in_window('redis', call.start, call.end):
            return '5xx', 'redis window'
        if soak.in_window('kill', call.start, call.end):
            return '5xx', 'kill window'
        return '5xx', 'OUTSIDE'
    if call.wrong:
        return 'wrong', call.wrong
    return None


def call_errors(
    soak: Soak,
) -> tuple[collections.Counter[tuple[str, str, str]], list[str], int]:
    """Errors by route, outcome and where; the failures (20 at the most, and
    how many more); and the uploads a transport error cut in the kill window."""
    failures: list[str] = []
    errors: collections.Counter[tuple[str, str, str]] = collections.Counter()
    cut_uploads = 0
    for call in soak.calls:
        found = classify(soak, call)
        if found is None:
            continue
        kind, where = found
        if kind == 'transport' and where == 'kill window':
            cut_uploads += call.route == 'upload'
        errors[(f'{call.method} {call.route}', call.outcome, where)] += 1
        if where in ('OUTSIDE', 'READ') or kind == 'wrong':
            failures.append(
                f'{call.method} {call.route} at {call.start:.1f}-{call.end:.1f} s: '
                f'{call.outcome} {call.wrong or where}'
            )
    failures = failures[:20] + (
        [f'... and {len(failures) - 20} more'] if len(failures) > 20 else []
    )
    return errors, failures, cut_uploads


def trend_failures(options: Options, trends: dict[int, dict[str, Any]]) -> list[str]:
    """Workers whose memory or descriptors grow too fast, or no trend at all."""
    failures = []
    for pid, trend in trends.items():
        if trend.get('rss_mb_per_min', -math.inf) > options.rss_slope:
            failures.append(
                f'worker {pid}: RSS grows {trend["rss_mb_per_min"]:.1f} MB/min '
                f'(limit {options.rss_slope})'
            )
        if trend.get('fd_growth', -math.inf) > options.fd_growth:
            failures.append(
                f'worker {pid}: descriptors grew by {trend["fd_growth"]} '
                f'(limit {options.fd_growth})'
            )
    if not any('rss_mb_per_min' in trend for trend in trends.values()):
        failures.append('no worker had enough samples for a memory trend')
    return failures


def shutdown_failures(
    check: dict[str, Any], cut_uploads: int, exit_code: Any
) -> list[str]:
    """``asgilook check`` finding more than the kill explains; uvicorn's exit."""
    failures = []
    excused = {'orphan', 'partial'}
    found = check['problems']
    if check['exit'] != 0:
        explained = set(found) <= excused and sum(found.values()) <= 2 * cut_uploads
        if not found or not explained:
            failures.append(f'asgilook check: exit {check["exit"]}, {found}')
    if exit_code not in (0, -signal.SIGTERM):
        failures.append(f'uvicorn exited {exit_code}')
    return failures


def verdict(
    soak: Soak, final: list[str], check: dict[str, Any], exit_code: Any
) -> dict[str, Any]:
    """Every failure of the run (none: it passed), its errors and trends."""
    errors, failures, cut_uploads = call_errors(soak)
    failures.extend(f'final check: {problem}' for problem in final[:20])
    trends = worker_trends(soak)
    failures.extend(trend_failures(soak.o, trends))
    failures.extend(shutdown_failures(check, cut_uploads, exit_code))
    failures.extend(sanity(soak))
    return {'errors': errors, 'failures': failures, 'trends': trends}


def worker_trends(soak: Soak) -> dict[int, dict[str, Any]]:
    trends: dict[int, dict[str, Any]] = {}
    # NOTE: After the warm-up of each worker, and of the survivor after
    #   the kill, which then takes all the load.
    kill_end = soak.windows.get('kill', [0, 0])[1]
    settle = max(soak.end / 2, 0 if math.isnan(kill_end) else kill_end + soak.o.rewarm)
    for pid in soak.worker_pids:
        mine = [s for s in soak.samples if s['pid'] == pid]
        if not mine:
            continue
        first = mine[0]['t']
        settled = [s for s in mine if s['t'] >= max(settle, first + soak.o.warmup)]
        trend: dict[str, Any] = {
            'first': first,
            'last': mine[-1]['t'],
            'rss_max_mb': max(s['rss'] for s in mine) / 2**20,
            'rss_end_mb': mine[-1]['rss'] / 2**20,
            'cpu_s': mine[-1]['cpu'] - mine[0]['cpu'],
            'fds_end': mine[-1]['fds'],
            'samples': len(settled),
            'killed': pid == getattr(soak, 'killed', None),
        }
        if len(settled) >= soak.o.min_samples and not trend['killed']:
            trend['rss_mb_per_min'] = (
                slope([(s['t'], s['rss'] / 2**20) for s in settled]) * 60
            )
            head = sorted(s['fds'] for s in settled[:3])[1]
            tail = sorted(s['fds'] for s in settled[-3:])[1]
            trend['fd_growth'] = tail - head
        trends[pid] = trend
    return trends


def sanity(soak: Soak) -> list[str]:
    """The run did what it is for; else it proves nothing."""
    problems = []
    done = collections.Counter(
        call.route for call in soak.calls if call.status and call.status < 400
    )
    scale = soak.o.duration / 30 if soak.o.minimums else 0
    wanted = {
        'upload': 15,
        'delete': 4,
        'list': 20,
        'thumbnail': 20,
        'thumbnail-avif': 10,
        'original': 10,
        'conditional': 10,
    }
    for route, least in wanted.items():
        if done[route] < least * scale:
            problems.append(f'too few {route}: {done[route]} < {least * scale:.0f}')
    not_modified = sum(1 for call in soak.calls if call.status == 304)
    if not_modified < 5 * scale:
        problems.append(f'too few 304s: {not_modified}')
    for kind in ('image-created', 'image-deleted'):
        if not soak.events[kind]:
            problems.append(f'no {kind} event received')
    redis = soak.windows.get('redis')
    if redis is None:
        problems.append('Redis was not restarted')
    else:
        bypassed = any(
            state == 'Bypass' and redis[0] <= t <= redis[1] + soak.o.grace
            for t, state in soak.cache_states
        )
        if not bypassed and not soak.events['unavailable']:
            problems.append('Redis was never seen down (no Bypass, no unavailable)')
        if not any(
            state != 'Bypass' and t > redis[1] + soak.o.grace
            for t, state in soak.cache_states
        ):
            problems.append('the cache was not used again after the Redis restart')
    kill = soak.windows.get('kill')
    if kill is None or math.isnan(kill[1]):
        problems.append('no replacement worker was up after the kill')
    else:
        replacement = getattr(soak, 'replacement', None)
        if not replacement:
            problems.append('no new worker pid appeared')
        else:
            cpu = [
                s['cpu']
                for s in soak.samples
                if s['pid'] == replacement[0] and s['t'] >= kill[1]
            ]
            # NOTE: An idle worker uses next to no CPU; one that serves
            #   its share of the load, seconds of it.
            if len(cpu) < 2 or cpu[-1] - cpu[0] < 0.2:
                problems.append(f'the replacement worker {replacement} served nothing')
        latest = max(kill[1], redis[1] if redis else 0)
        if not any(
            kind == 'image-created' and t > latest for t, kind in soak.event_times
        ):
            problems.append('no event delivered after the faults')
    return problems

"""The soak's report: figures by route, by time slice and by worker, as a
dictionary (what ``--json`` saves) and as text."""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any

from bench.common import table
from bench.soak_engine import Soak


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def build_report(
    soak: Soak, verdict: dict[str, Any], check: dict[str, Any]
) -> dict[str, Any]:
    """The run's report: what ``--json`` saves, and ``render`` shows."""
    routes: dict[str, dict[str, Any]] = {}
    for route in sorted({f'{c.method} {c.route}' for c in soak.calls}):
        mine = [c for c in soak.calls if f'{c.method} {c.route}' == route]
        latencies = [
            (c.end - c.start) * 1000 for c in mine if c.status and c.route != 'events'
        ]
        outcomes = collections.Counter(c.outcome for c in mine)
        routes[route] = {
            'requests': len(mine),
            'outcomes': dict(sorted(outcomes.items())),
            'p50_ms': percentile(latencies, 0.5),
            'p95_ms': percentile(latencies, 0.95),
            'p99_ms': percentile(latencies, 0.99),
        }
    slices = []
    edge = 0.0
    while edge < soak.end:
        mine = [
            c for c in soak.calls
            if edge <= c.start < edge + soak.o.slice and c.route != 'events'
        ]  # fmt: skip
        latencies = [(c.end - c.start) * 1000 for c in mine if c.status]
        faults = [
            name
            for name in soak.windows
            if soak.in_window(name, edge, edge + soak.o.slice)
        ]
        slices.append(
            {
                'start': edge,
                'requests': len(mine),
                'errors': sum(1 for c in mine if not c.status or c.status >= 500),
                'p50_ms': percentile(latencies, 0.5),
                'p95_ms': percentile(latencies, 0.95),
                'p99_ms': percentile(latencies, 0.99),
                'faults': faults,
            }
        )
        edge += soak.o.slice
    memory = collections.defaultdict(list)
    for sample in soak.samples:
        memory[sample['pid']].append(
            [round(sample['t'], 1), sample['rss'] // 1024, sample['fds']]
        )
    served = sum(1 for c in soak.calls if c.status and c.status < 500)
    return {
        'options': dataclasses.asdict(soak.o),
        'duration': soak.end,
        'requests': len(soak.calls),
        'served': served,
        'routes': routes,
        'errors': [
            {'route': route, 'outcome': outcome, 'where': where, 'count': n}
            for (route, outcome, where), n in sorted(verdict['errors'].items())
        ],
        'windows': {name: list(window) for name, window in soak.windows.items()},
        'killed': getattr(soak, 'killed', None),
        'replacement': getattr(soak, 'replacement', None),
        'events': dict(soak.events),
        'cache': dict(collections.Counter(state for _, state in soak.cache_states)),
        'slices': slices,
        'workers': verdict['trends'],
        'samples': dict(memory),
        'final': getattr(soak, 'final', {}),
        'check': {key: check[key] for key in ('exit', 'problems')},
        'failures': verdict['failures'],
        'passed': not verdict['failures'],
    }


def columns(headers: list[str], rows: list[list[Any]]) -> str:
    """``rows`` under ``headers``, right-aligned."""
    return table([headers, *rows], cross='  ', right=True)


def ms(value: float) -> str:
    return '-' if math.isnan(value) else f'{value:.0f}'


def render(report: dict[str, Any]) -> str:
    out = [
        f'Soak: {report["duration"]:.0f} s, {report["requests"]} requests, '
        f'{report["served"]} served (status < 500)',
        '',
        'Fault windows (s from start):',
    ]
    for name, (start, end) in report['windows'].items():
        out.append(f'  {name:6} {start:6.1f} .. {end:6.1f}  ({end - start:.1f} s)')
    out.append(
        f'  worker killed: pid {report["killed"]}, replacement: {report["replacement"]}'
    )
    out += ['', 'By route (latency of answered requests, ms):']
    out.append(
        columns(
            ['route', 'requests', 'p50', 'p95', 'p99', 'outcomes'],
            [
                [
                    route, r['requests'], ms(r['p50_ms']), ms(r['p95_ms']),
                    ms(r['p99_ms']),
                    ' '.join(f'{k}:{v}' for k, v in r['outcomes'].items()),
                ]
                for route, r in report['routes'].items()
            ],
        )
    )  # fmt: skip
    out += ['', 'Errors (5xx, transport errors, wrong answers):']
    if report['errors']:
        out.append(
            columns(
                ['route', 'outcome', 'where', 'count'],
                [
                    [e['route'], e['outcome'], e['where'], e['count']]
                    for e in report['errors']
                ],
            )
        )
    else:
        out.append('  none')
    out += ['', f'Per {report["options"]["slice"]:.0f} s slice (ms):']
    out.append(
        columns(
            ['from', 'requests', 'errors', 'p50', 'p95', 'p99', 'faults'],
            [
                [
                    f'{s["start"]:.0f}', s['requests'], s['errors'], ms(s['p50_ms']),
                    ms(s['p95_ms']), ms(s['p99_ms']), ','.join(s['faults']),
                ]
                for s in report['slices']
            ],
        )
    )  # fmt: skip
    out += ['', 'Workers (trend over the second half, after warm-up):']
    rows = []
    for pid, w in report['workers'].items():
        trend = w.get('rss_mb_per_min')
        rows.append(
            [
                pid, f'{w["first"]:.0f}-{w["last"]:.0f}', 'yes' if w['killed'] else '',
                f'{w["rss_max_mb"]:.1f}', f'{w["rss_end_mb"]:.1f}', f'{w["cpu_s"]:.1f}',
                '-' if trend is None else f'{trend:+.2f}', w['fds_end'],
                w.get('fd_growth', '-'), w['samples'],
            ]
        )  # fmt: skip
    out.append(
        columns(
            ['pid', 'seen (s)', 'killed', 'RSS max MB', 'RSS end MB', 'CPU s', 'MB/min',
             'fds end', 'fd growth', 'samples'],
            rows,
        )
    )  # fmt: skip
    samples = report['samples']
    out += ['', 'RSS MB / fds every 10 s:']
    pids = list(samples)
    times = sorted(
        {int(t) // 10 * 10 for series in samples.values() for t, _, _ in series}
    )
    rows = []
    for t in times:
        row: list[Any] = [t]
        for pid in pids:
            near = [s for s in samples[pid] if int(s[0]) // 10 * 10 == t]
            row.append(f'{near[0][1] / 1024:.1f} / {near[0][2]}' if near else '')
        rows.append(row)
    out.append(columns(['t', *map(str, pids)], rows))
    out += [
        '',
        f'Events received: {report["events"]}',
        f'Cache states seen: {report["cache"]}',
        f'Final listing: {report["final"]}',
        f'asgilook check --grace 0: exit {report["check"]["exit"]} '
        f'{report["check"]["problems"] or ""}',
        '',
    ]
    if report['failures']:
        out.append('FAIL:')
        out += [f'  {failure}' for failure in report['failures']]
    else:
        out.append('PASS')
    return '\n'.join(out)

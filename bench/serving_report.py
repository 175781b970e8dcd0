"""The serving benchmark's report: the tables, the cache flood, notes and checks."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from bench.common import table
from bench.serving_checks import Check
from bench.serving_edge import BARE_NAME
from bench.serving_edge import NGINX_NAME
from bench.serving_edge import EdgeRow
from bench.serving_measure import FLOOD_REQUESTS
from bench.serving_measure import JUNK_LENGTH
from bench.serving_measure import Row


@dataclasses.dataclass
class Results:
    """Everything one run found, for the table and the JSON."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    edge: list[EdgeRow] = dataclasses.field(default_factory=list)
    flooding: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )
    notes: list[str] = dataclasses.field(default_factory=list)
    footnotes: list[str] = dataclasses.field(default_factory=list)
    checks: list[Check] = dataclasses.field(default_factory=list)


def _digits(unit: str) -> int:
    return 1 if unit == 'ms' else 0


def print_table(rows: Sequence[Row]) -> None:
    """One line per row: asgilook's figures, the baseline's, and a/b."""
    header = (
        'path',
        'unit',
        'asgilook median [min–max]',
        'baseline',
        'its median [min–max]',
        'a/b',
    )
    lines = [header] + [
        (row.label, row.unit, row.ours.text(_digits(row.unit)), row.baseline_name,
         row.baseline.text(_digits(row.unit)), f'{row.ratio:.2f}')
        for row in rows
    ]  # fmt: skip
    print(table(lines))


def _ratio(ratio: float | None) -> str:
    return '-' if ratio is None else f'{ratio:.2f}'


def print_edge(rows: Sequence[EdgeRow]) -> None:
    """One line per path and asgilook process: its rate, the ceilings', the
    ratios, and whether the target is met."""
    print(
        '\nAt the edge: asgilook against the ceilings, the same bytes (req/s; '
        'a/n = asgilook / nginx, a/b = asgilook / bare app, of the medians)'
    )
    header = ('path', 'process', 'asgilook', NGINX_NAME, 'a/n', BARE_NAME, 'a/b',
              'target', 'met')  # fmt: skip
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        nginx = row.baselines.get(NGINX_NAME)
        verdict = {None: '-', True: 'yes', False: 'NO'}[row.met]
        short_name = 'a/n' if row.ceiling == NGINX_NAME else 'a/b'
        lines.append(
            (row.label, row.process, row.ours.text(0),
             '-' if nginx is None else nginx.text(0), _ratio(row.ratio(NGINX_NAME)),
             row.baselines[BARE_NAME].text(0), _ratio(row.ratio(BARE_NAME)),
             f'{short_name} >= {row.target:.1f}', verdict)
        )  # fmt: skip
    print(table(lines))


def print_flood(flooding: dict[str, dict[str, dict[str, Any]]]) -> None:
    print(
        f'\nCache flood: growth of Redis used_memory from {FLOOD_REQUESTS} GETs of '
        'one original, after FLUSHALL (MB = 10^6 bytes)'
    )
    print(f'{"":<48}{"asgilook":>14}{"tutorial":>14}')
    labels = {
        'junk_query': f'?junk=<n>-<{JUNK_LENGTH} random characters>',
        'uuid_spellings': f'the uuid spelt {FLOOD_REQUESTS} ways (case, hyphens)',
    }
    for key, label in labels.items():
        cells = []
        for name in ('asgilook', 'tutorial'):
            result = flooding[name][key]
            # Adding 0.0 turns a rounded -0.0 into 0.0.
            cells.append(f'{round(result["growth_mb"], 2) + 0.0:.2f}')
        print(f'{label:<48}{cells[0]:>14}{cells[1]:>14}')
    for name in ('asgilook', 'tutorial'):
        statuses = {
            key: flooding[name][key]['statuses']
            for key in ('junk_query', 'uuid_spellings')
        }
        print(
            f'  {name} statuses: junk queries {statuses["junk_query"]}, '
            f'spellings {statuses["uuid_spellings"]}'
        )


def print_checks(checks: Sequence[Check]) -> None:
    print('\nHTTP checks on asgilook')
    for check in checks:
        verdict = 'PASS' if check.ok else 'FAIL'
        print(
            f'{verdict}  {check.name}' + (f'  ({check.detail})' if check.detail else '')
        )
    failed = sum(not check.ok for check in checks)
    print(
        f'\n{len(checks) - failed} of {len(checks)} checks passed'
        + (f', {failed} FAILED' if failed else '')
    )


def report(
    args: argparse.Namespace, settings: dict[str, Any], results: Results
) -> None:
    """Print the table, the flood, the notes and the checks."""
    versions = settings['versions']
    print(
        f'Serving benchmark, {time.strftime("%Y-%m-%d %H:%M")}: Python '
        f'{settings["python"]}, falcon {versions["falcon"]}, uvicorn '
        f'{versions["uvicorn"]}, Pillow {versions["pillow"]}, {settings["cpus"]} CPUs'
    )
    loads = [
        ' '.join(f'{load:.2f}' for load in settings[key])
        for key in ('load_before', 'load_after')
    ]
    print(f'Load average (1, 5, 15 min): {loads[0]} before, {loads[1]} after')
    print(f'uvicorn flags, every app: {settings["uvicorn_flags"]} --port <free port>')
    print('  asgilook: asgilook.asgi:app')
    if settings['tutorial_source']:
        print(
            '  tutorial: tutorial:make --factory (bench/tutorial.py; Falcon '
            f'{versions["falcon"]} examples/asgilook, unchanged, as '
            'asgilook_tutorial)'
        )
    print(
        '  bare:     bare:app (bench/bare.py, the bytes and headers asgilook '
        'answered, from memory)'
    )
    nginx = settings['nginx'] or 'not installed'
    print(f'  nginx:    {nginx}, one worker, sendfile on (bench/serving_setup.py)')
    print(
        f'Latency: {args.repeat} requests each, one at a time, keep-alive. '
        f'Throughput: {args.runs} runs each of {settings["wrk"]}.\n'
        'The apps take turns within each repetition. a/b = asgilook / baseline, '
        'of the medians (ms: lower is better; req/s: higher is better).\n'
    )
    if results.rows:
        print_table(results.rows)
    for footnote in results.footnotes:
        print(f'* {footnote}')
    if results.edge:
        print_edge(results.edge)
    if results.flooding:
        print_flood(results.flooding)
    print('\nNotes')
    for note in results.notes:
        print(f'  {note}')
    print_checks(results.checks)

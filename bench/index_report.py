"""The index benchmark's report: the table of figures against baselines, the notes."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bench.common import table
from bench.index_read import HTTP_PAGES
from bench.index_setup import OLD_RELEASE
from bench.index_setup import PAGE
from bench.index_setup import SMALL
from bench.index_setup import Bench
from bench.index_setup import Result
from bench.index_setup import short
from bench.index_upload import CLIENTS
from bench.index_writes import PUT_TASKS


def _images(count: int) -> str:
    return f'{count:,}'


def _amount(value: float, unit: str) -> str:
    if unit == 'MB':
        # Adding 0.0 turns a rounded -0.0 into 0.0.
        return f'{round(value / 1e6, 1) + 0.0:.1f} MB'
    digits = {'s': 2, 'ms': 2, '/s': 1}.get(unit, 2)
    return f'{value:.{digits}f} {unit}'


def result_lines(results: Sequence[Result]) -> list[tuple[str, ...]]:
    """The table's lines: its header, then one per result."""
    header = ('what', 'figure', 'baseline', 'ratio', 'target', 'met')
    lines = [header]
    for result in results:
        baseline = ''
        if result.baseline is not None:
            amount = _amount(result.baseline, result.unit)
            baseline = f'{result.baseline_name}: {amount}'
        ratio = '' if result.ratio is None else f'{result.ratio:.3g}'
        met = {None: '', True: 'yes', False: 'NO'}[result.met]
        lines.append(
            (result.what, _amount(result.figure, result.unit), baseline, ratio,
             result.target, met)
        )  # fmt: skip
    return lines


def report(args: argparse.Namespace, settings: dict[str, Any], run: Bench) -> None:
    print(
        f'Index benchmark, {time.strftime("%Y-%m-%d %H:%M")}: Python '
        f'{settings["python"]}, SQLite {settings["sqlite"]}, '
        f'{settings["cpus"]} CPUs, load average before {settings["load"]}'
    )
    print(
        f'{_images(args.images)} and {_images(SMALL)} synthetic images; '
        f'{args.starts} new worker(s) each; {args.depths} random depths in '
        f'process, {HTTP_PAGES} over HTTP per worker; uploads for '
        f'{args.duration} s per server, in {args.rounds} turns.'
    )
    print(f'uvicorn flags, every server: {settings["uvicorn_flags"]}')
    big, small = short(args.images), short(SMALL)
    legend = (
        'build: bulk inserts into the real schema, in one transaction (SQLite: '
        'executemany; PostgreSQL: COPY, then VACUUM ANALYZE); journal: writing '
        'the old journal.jsonl of the same images (making up the images is not '
        'counted).',
        f'new worker: a fresh uvicorn (1 worker, a Redis of its own), its first '
        f'GET /images?limit={PAGE} (page), then GET /images?order=newest (newest), '
        f'once its port accepts; medians of {args.starts} start(s). journal: the '
        f'old Journal(root).page(limit={PAGE}) in a new process.',
        f'worker RSS: of those workers; index memory: at {big} less at {small}, '
        f'after {HTTP_PAGES} pages. journal: what loading the journal of {big} '
        'added to its process.',
        f'.page(after=random): in this process, page({PAGE + 1}, after=<id at a '
        f'random depth>), {args.depths} depths; page 1: page({PAGE + 1}).',
        f'GET /images?after=random: the {HTTP_PAGES} pages per new worker, each '
        f'a different URL (a cache Miss), the whole request.',
        f'uploads: a {settings["upload_bytes"]:,}-byte 64x64 PNG, {CLIENTS} '
        f'keep-alive clients, {args.duration} s per server in {args.rounds} '
        f'turns taken with the others; journal: the previous release, '
        f'{OLD_RELEASE}, with as many workers. Its upload path also changed '
        'beside the index (see writes alone).',
        f'index writes alone: put() of new images, {PUT_TASKS} at a time per '
        f'process, no HTTP, pictures or files, {args.duration / 2:.3g} s; '
        'journal: the old Journal.put, in threads as the old store called it.',
    )
    print('\n'.join(f'  {line}' for line in legend))
    print('ratio = figure / baseline\n')
    print(table(result_lines(run.results), sep=' | ', cross='-+-'))
    if run.notes:
        print('\nNotes')
        for note in run.notes:
            print(f'  {note}')
    print('\nTimings: ' + ', '.join(f'{k} {v:.0f} s' for k, v in run.timings.items()))

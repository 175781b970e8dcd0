"""The end of ``asgilook import``: what became of the pictures, and its status."""

from __future__ import annotations

import pathlib

from rich.console import Console
from rich.filesize import decimal
from rich.table import Table
from rich.text import Text

from asgilook.commands.importer.folders import Tally
from asgilook.commands.importer.importing import Importer

# Exit statuses of `asgilook import`; 2 is argparse's own, for a usage error.
OK = 0
INCOMPLETE = 1
UNAVAILABLE = 3
INTERRUPTED = 130


def conclude(
    importer: Importer,
    pictures: int,
    manifest: pathlib.Path,
    output: Console,
    errors: Console,
) -> int:
    """Say what became of the pictures, and why the import stopped; the status."""
    tally = importer.tally
    _summarize(output, tally, pictures, manifest)
    for warning in importer.warnings:
        errors.print(f'asgilook import: {warning}')
    if importer.stopped is not None:
        errors.print(f'asgilook import: {importer.stopped}')
        return UNAVAILABLE
    if not importer.finished:
        errors.print(
            'asgilook import: interrupted; run the same command again to go on.'
        )
        return INTERRUPTED
    return INCOMPLETE if tally.refused or tally.unreadable else OK


def _summarize(
    console: Console, tally: Tally, pictures: int, manifest: pathlib.Path
) -> None:
    counts = Table.grid(padding=(0, 1))
    counts.add_column(justify='right')
    counts.add_column()
    size = decimal(tally.imported_bytes)
    counts.add_row(str(tally.imported), f'imported ({size})')
    counts.add_row(str(tally.already), 'already imported (skipped)')
    counts.add_row(str(tally.not_pictures), 'not pictures (skipped)')
    counts.add_row(str(len(tally.refused)), 'refused')
    counts.add_row(str(len(tally.unreadable)), 'could not be read')
    not_tried = pictures - tally.settled
    if not_tried:
        counts.add_row(str(not_tried), 'not tried')
    console.print(counts)
    failed = tally.refused + tally.unreadable
    if failed:
        table = Table('File', 'Why it was not imported', title='Not imported')
        for name, why in failed:
            table.add_row(Text(name), Text(why))
        console.print(table)
    console.print(f'The manifest of what was imported: {manifest}')

"""What ``asgilook migrate`` and ``asgilook rekey`` say, and their exit status.

While a walk (:mod:`~asgilook.commands.objects_walk`) goes on, a progress bar
on stderr, when it is a terminal; at its end, a summary on stdout (what
became of the objects, the first failures with why, and what to do), or with
``--json`` a document of it all, for programs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Coroutine
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from asgilook.commands.objects_walk import CANNOT_START
from asgilook.commands.objects_walk import CannotStart
from asgilook.commands.objects_walk import Tally

#: The failures the summary shows; ``--json`` has all that the tally kept.
EXAMPLES = 5


def progress_bar(console: Console) -> Progress:
    """Objects done, their bytes, what became of them; only on a terminal."""
    return Progress(
        TextColumn('{task.description}', markup=False),
        BarColumn(),
        TextColumn('{task.completed:.0f} objects, {task.fields[size]}', markup=False),
        TextColumn('{task.fields[detail]}', markup=False),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def conclusion(tally: Tally, done: str, failed: str) -> str:
    """The last line: ``done`` if all went well; else what to do."""
    if tally.interrupted:
        return 'Interrupted: run the same command again to go on.'
    if tally.stopped is not None:
        return f'Stopped: {tally.stopped}. Run the same command again to go on.'
    if tally.failed:
        objects = 'object' if tally.failed == 1 else 'objects'
        return f'{tally.failed} {objects} failed: {failed}'
    return done


class Output:
    """Where a command speaks: progress and errors on stderr, the rest on stdout."""

    def __init__(self, name: str) -> None:
        self.name = name
        # NOTE: Lines are never cut, so that keys and reasons stay whole.
        self.errors = Console(
            stderr=True, highlight=False, markup=False, soft_wrap=True
        )
        self.out = Console(
            highlight=False, markup=False, width=None if sys.stdout.isatty() else 1000
        )
        self.progress = progress_bar(self.errors)

    def cannot_start(self, ex: CannotStart) -> int:
        self.errors.print(f'asgilook {self.name}: cannot start: {ex}')
        return CANNOT_START

    def run(self, main: Coroutine[Any, Any, None], tally: Tally) -> int | None:
        """Run ``main``; None, or CANNOT_START if it could not start (said)."""
        try:
            asyncio.run(main)
        except CannotStart as ex:
            return self.cannot_start(ex)
        except KeyboardInterrupt:
            # NOTE: Ctrl-C ends the walk, not the command: the summary says
            #   what was done, and a second run goes on from there.
            tally.interrupted = True
        return None

    def report(
        self,
        tally: Tally,
        heading: Sequence[str],
        last: str,
        facts: Mapping[str, Any],
        as_json: bool,
    ) -> int:
        """Print the summary, or with ``as_json`` the document; the exit status."""
        if as_json:
            print(json.dumps(document(self.name, tally, facts), indent=2))
        else:
            self._summary(tally, heading, last)
        return tally.status

    def _summary(self, tally: Tally, heading: Sequence[str], last: str) -> None:
        for line in heading:
            self.out.print(line)
        counts = Table.grid(padding=(0, 2))
        counts.add_column(justify='right')
        counts.add_column()
        counts.add_column(justify='right')
        for outcome in tally.outcomes:
            size = decimal(tally.bytes[outcome])
            counts.add_row(str(tally.objects[outcome]), outcome, size)
        self.out.print(counts)
        if tally.failures:
            table = Table('Object', 'In', 'Why it failed', title='Failed')
            for failure in tally.failures[:EXAMPLES]:
                table.add_row(
                    Text(failure.key), Text(failure.where), Text(failure.reason)
                )
            self.out.print(table)
            if tally.failed > EXAMPLES:
                kept = len(tally.failures)
                listed = 'all' if kept == tally.failed else f'the first {kept}'
                more = tally.failed - EXAMPLES
                self.out.print(f'... and {more} more (--json lists {listed}).')
        self.out.print(last)


def document(name: str, tally: Tally, facts: Mapping[str, Any]) -> dict[str, Any]:
    """What a program reads (``--json``)."""
    return {
        'command': name,
        **facts,
        'objects': {key.replace(' ', '_'): n for key, n in tally.objects.items()},
        'bytes': {key.replace(' ', '_'): n for key, n in tally.bytes.items()},
        'failures': [dataclasses.asdict(failure) for failure in tally.failures],
        'stopped': tally.stopped,
        'interrupted': tally.interrupted,
        'status': tally.status,
    }

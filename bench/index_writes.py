"""The index benchmark's writes alone: ``put`` without HTTP, pictures or files.

Phase 5b of ``bench/index.py``: new processes (1, then 2 at once) each put
``PUT_TASKS`` new images at a time into a fresh index, SQLite's, PostgreSQL's
and the previous release's journal, from a moment agreed between them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench.common import ROOT
from bench.common import BenchError
from bench.common import progress
from bench.index_setup import Bench
from bench.index_setup import OldRelease
from bench.index_setup import environment
from bench.index_upload import CLIENTS

# NOTE: One process of the writes-alone comparison: PUT_TASKS puts at a
#   time, as the store makes them (the journal's in the default executor, as
#   the previous release did), from a moment agreed with the other processes
#   until SECONDS later; prints how many.
PUT_SCRIPT = """
import asyncio, secrets, sys, time, uuid
kind, where, start, seconds, tasks = sys.argv[1:6]
start, seconds, tasks = float(start), float(seconds), int(tasks)

async def main():
    loop = asyncio.get_running_loop()
    if kind == 'journal':
        import pathlib
        sys.path.insert(0, sys.argv[6])
        import old_journal
        journal = old_journal.Journal(pathlib.Path(where))
        async def put(*args):
            await loop.run_in_executor(None, journal.put, *args)
        close = None
    else:
        if kind == 'SQLite':
            from asgilook.storage.index.sqlite import SQLiteIndex as Kind
        else:
            from asgilook.storage.index.postgres import PostgresIndex as Kind
        index = Kind(where)
        await index.count()
        put, close = index.put, index.close
    await asyncio.sleep(max(0.0, start - time.time()))
    deadline = time.perf_counter() + seconds
    done = 0
    async def writer():
        nonlocal done
        while time.perf_counter() < deadline:
            image_id = str(uuid.uuid4())
            file = f'{image_id}.{secrets.token_hex(6)}.jpeg'
            await put(image_id, file, (64, 64), secrets.token_hex(32))
            done += 1
    await asyncio.gather(*(writer() for _ in range(tasks)))
    if close is not None:
        await close()
    print(done)

asyncio.run(main())
"""
PUT_TASKS = CLIENTS
# Seconds for the processes to start and get ready before they all begin.
PUT_HEAD_START = 1.5


def put_rate(
    kind: str, where: str, processes: int, seconds: float, old: OldRelease | None
) -> float:
    """Index writes per second, alone: ``processes`` processes writing at once."""
    start = time.time() + PUT_HEAD_START
    args = [kind, where, str(start), str(seconds), str(PUT_TASKS)]
    if old is not None:
        args.append(str(old.journal_dir))
    os.sync()
    running = [
        subprocess.Popen(
            [sys.executable, '-c', PUT_SCRIPT, *args],
            env=environment(),
            cwd=ROOT if kind != 'journal' else where,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    done = 0
    for process in running:
        out, err = process.communicate()
        if process.returncode != 0:
            raise BenchError(f'{kind} writes alone failed:\n{err.strip()[-2000:]}')
        done += int(out)
    return done / seconds


# The phase


def writes(run: Bench) -> None:
    """5b: the index's writes alone, without HTTP, pictures or files."""
    seconds = run.args.duration / 2
    kinds = ['SQLite'] + (['PostgreSQL'] if run.postgres is not None else [])
    if run.old is not None:
        kinds.insert(0, 'journal')
    rates: dict[tuple[str, int], float] = {}
    for processes in (1, 2):
        progress(
            f'5b. Index writes alone, {processes} process(es): '
            f'{", ".join(kinds)}, {seconds:.3g} s each ...'
        )
        # NOTE: The other way round the second time, so that drift hits
        #   each alike.
        for kind in kinds[:: 1 if processes == 1 else -1]:
            if kind == 'PostgreSQL':
                assert run.postgres is not None
                where = run.postgres.database()
            else:
                where = tempfile.mkdtemp(prefix=f'writes-{kind}-', dir=run.tmp)
            rates[kind, processes] = put_rate(kind, where, processes, seconds, run.old)
    run.raw['writes alone'] = {
        f'{kind} {processes}': rate for (kind, processes), rate in rates.items()
    }
    for processes in (1, 2):
        baseline = rates.get(('journal', processes))
        many = f'{processes} process' + ('es' if processes > 1 else '')
        for kind in kinds:
            if kind == 'journal':
                continue
            run.add(
                f'writes_{kind}_{processes}',
                f'index writes alone, {kind}, {many}',
                '/s', rates[kind, processes], baseline, f'journal, {many}',
            )  # fmt: skip

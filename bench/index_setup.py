"""The index benchmark's ground: its constants, the state of a run, and setup.

Setup (the first phase of ``bench/index.py``) extracts the previous release
from git and starts a throwaway PostgreSQL server, if it can be had; each
missing one only leaves out its rows, and says why. Here too: the
environment and the uvicorn command of every server the phases start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from asgilook.storage.index import Index
from bench.common import ROOT
from bench.common import UVICORN_FLAGS
from bench.common import BenchError
from bench.common import Uvicorn
from bench.common import progress

OLD_RELEASE = 'dbe6b76'
PAGE = 100
SMALL = 1_000
SEED = 2024
STARTUP_TIMEOUT = 60.0


def short(count: int) -> str:
    """1M, 200k, 1k: a number of images, for the table."""
    for unit, size in (('M', 1_000_000), ('k', 1_000)):
        if count % size == 0:
            return f'{count // size}{unit}'
    return f'{count:,}'


@dataclasses.dataclass
class Result:
    """One line of the table: a figure, against its baseline, and the target."""

    key: str
    what: str
    unit: str
    figure: float
    baseline: float | None = None
    baseline_name: str = ''
    target: str = ''
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.figure / self.baseline

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), 'ratio': self.ratio}


@dataclasses.dataclass
class OldRelease:
    """The previous release, from git: its package, and its journal as a module."""

    package_root: pathlib.Path
    journal_dir: pathlib.Path
    journal: ModuleType


@dataclasses.dataclass
class JournalLoad:
    seconds: float
    growth: int


@dataclasses.dataclass
class Start:
    """What one new worker did: its first pages, its RSS, its deep pages."""

    first: float
    newest: float
    states: list[str]
    rss_idle: int
    rss_first: int
    rss_pages: int
    pages: list[float]
    misses: int


@dataclasses.dataclass
class Postgres:
    """The PostgreSQL server, and the index class, if they can be had."""

    server: Any
    index: Callable[[str], Index]

    def database(self) -> str:
        url: str = self.server.database()
        return url


class Bench:
    """One run: what it has set up, and what it found.

    The phases (functions of this, in ``bench/index_*.py``) fill it in turn.
    """

    def __init__(
        self, args: argparse.Namespace, tmp: pathlib.Path, stack: contextlib.ExitStack
    ) -> None:
        self.args = args
        self.tmp = tmp
        self.stack = stack
        self.large = args.images
        self.big, self.small = short(self.large), short(SMALL)
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.timings: dict[str, float] = {}
        self.raw: dict[str, Any] = {}
        self.old: OldRelease | None = None
        self.postgres: Postgres | None = None
        self.ids: dict[int, list[str]] = {}
        self.databases: dict[int, str] = {}
        self.journal: JournalLoad | None = None
        self.starts: dict[tuple[str, int], list[Start]] = {}

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.results.append(Result(*args, **kwargs))

    def sqlite_root(self, count: int) -> pathlib.Path:
        return self.tmp / f'sqlite-{count}'

    @property
    def journal_root(self) -> pathlib.Path:
        return self.tmp / 'journal'

    def backends(self) -> list[str]:
        return ['SQLite'] + (['PostgreSQL'] if self.postgres is not None else [])

    def settings(self, backend: str, count: int) -> dict[str, str]:
        """The environment of a server of ``backend`` with ``count`` images."""
        if backend == 'SQLite':
            return environment(ASGI_LOOK_STORAGE_PATH=str(self.sqlite_root(count)))
        return environment(
            ASGI_LOOK_STORAGE_PATH=str(self.tmp / f'postgres-files-{count}'),
            ASGI_LOOK_DATABASE_URL=self.databases[count],
        )


# Processes


def environment(pythonpath: pathlib.Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without any asgilook, bench or coverage settings.

    NOTE: Not bench/serving.py's: ``PYTHONPATH`` is dropped, not added to,
    so that the previous release's server imports only the package it is
    given.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(('ASGI_LOOK_', 'BENCH_', 'COVERAGE_', 'PROMETHEUS_'))
        and name != 'PYTHONPATH'
    }
    if pythonpath is not None:
        env['PYTHONPATH'] = str(pythonpath)
    env.update(extra)
    return env


def sources() -> dict[str, tuple[int, int]]:
    """The modification time and size of every source file the servers run."""
    files = [*(ROOT / 'asgilook').rglob('*.py'), ROOT / 'tests' / 'postgres.py']
    found = {}
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            found[str(path.relative_to(ROOT))] = (stat.st_mtime_ns, stat.st_size)
    return found


def asgilook_server(
    name: str,
    env: dict[str, str],
    log_path: pathlib.Path,
    workers: int = 1,
    cwd: pathlib.Path = ROOT,
) -> Uvicorn:
    """``python -m uvicorn asgilook.asgi:app`` on a free port: ``UVICORN_FLAGS``."""
    flags = (*UVICORN_FLAGS, '--workers', str(workers))
    return Uvicorn(
        name,
        'asgilook.asgi:app',
        flags,
        env,
        log_path,
        cwd=cwd,
        startup_timeout=STARTUP_TIMEOUT,
    )


# The previous release


def old_release(tmp: pathlib.Path) -> OldRelease:
    """Extract commit ``OLD_RELEASE`` into ``tmp``.

    Raises:
        BenchError: git, or the commit, is not there.
    """
    package_root = tmp / 'old-release'
    journal_dir = tmp / 'old-journal'
    package_root.mkdir()
    journal_dir.mkdir()
    try:
        source = subprocess.run(
            ['git', 'show', f'{OLD_RELEASE}:asgilook/journal.py'],
            cwd=ROOT, check=True, capture_output=True,
        ).stdout  # fmt: skip
        archive = subprocess.run(
            ['git', 'archive', OLD_RELEASE, 'asgilook'],
            cwd=ROOT, check=True, capture_output=True,
        ).stdout  # fmt: skip
        subprocess.run(
            ['tar', '-x', '-C', str(package_root)], input=archive, check=True
        )
    except (OSError, subprocess.CalledProcessError) as ex:
        stderr = getattr(ex, 'stderr', b'') or b''
        raise BenchError(
            f'{ex} {stderr.decode(errors="replace").strip()}'.strip()
        ) from ex
    path = journal_dir / 'old_journal.py'
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location('old_journal', path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # NOTE: Its dataclass looks its module up while it is being made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return OldRelease(package_root, journal_dir, module)


# PostgreSQL


def start_postgres(stack: contextlib.ExitStack) -> tuple[Postgres | None, str]:
    """A throwaway PostgreSQL server, or None and why not."""
    if not (ROOT / 'tests' / 'postgres.py').is_file():
        return None, 'tests/postgres.py is not there'
    try:
        from asgilook.storage.index.postgres import PostgresIndex
        from tests.postgres import PostgresServer
        from tests.postgres import PostgresUnavailable
    except ImportError as ex:
        return None, f'cannot import it: {ex}'
    try:
        server = stack.enter_context(PostgresServer())  # type: ignore[no-untyped-call]
    except (PostgresUnavailable, OSError, subprocess.CalledProcessError) as ex:
        return None, f'the server did not start: {ex}'
    return Postgres(server, PostgresIndex), ''


# The phase


def setup(run: Bench) -> None:
    """The previous release and PostgreSQL, or notes on why not."""
    try:
        run.old = old_release(run.tmp)
    except BenchError as ex:
        run.notes.append(
            f'The baselines of the previous release are skipped: git could '
            f'not give commit {OLD_RELEASE} ({ex}).'
        )
    run.postgres, why = start_postgres(run.stack)
    if run.postgres is None:
        run.notes.append(f'The PostgreSQL rows are skipped: {why}.')
        progress(f'The PostgreSQL rows are skipped: {why}')

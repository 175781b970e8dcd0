"""What the benchmarks share: paths, progress, errors, servers, tables, JSON.

The scripts of ``bench/`` run as ``python bench/NAME.py``: each puts the
project's root on ``sys.path`` first and imports this module, and its own
parts, as ``bench.common``, ``bench.index_read``... The processes the
service itself starts the same way (free ports, a private Redis, waiting,
stopping) come from ``asgilook.commands.processes``, and ``port_open`` from
``tests/servers.py``, rather than from here.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import Self

from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import free_port
from asgilook.commands.processes import terminate
from asgilook.commands.processes import wait_until
from tests.servers import port_open

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / 'bench'
#: The real photos some benchmarks read, beside the checkout.
PHOTOS = ROOT.parent / 'shared' / 'photos'

CACHE_HEADER = 'X-ASGILook-Cache'
HTTP_TIMEOUT = 120.0
# NOTE: The same for every server of every benchmark; each adds --workers
#   its own way, and --port is added per server.
UVICORN_FLAGS = (
    '--loop', 'uvloop',
    '--http', 'httptools',
    '--no-access-log',
    '--log-level', 'warning',
    '--host', '127.0.0.1',
)  # fmt: skip
#: How much of a server's log an error message shows, at the most.
LOG_CHARS = 3000


class BenchError(Exception):
    """Something the benchmark needs did not work; the figures would be wrong."""


def progress(message: str) -> None:
    """Say what is being done: to stderr, so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


class Server:
    """A process serving HTTP on ``port`` of loopback: ``args``, run in ``cwd``.

    Its output is appended to ``log_path``; ``start()`` (or ``with``) returns
    once the port accepts connections, ``stop()`` stops it.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        port: int,
        env: dict[str, str],
        log_path: pathlib.Path,
        *,
        cwd: pathlib.Path = ROOT,
        startup_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f'http://127.0.0.1:{self.port}'
        self.args = list(args)
        self._env = env
        self._cwd = cwd
        self._log_path = log_path
        self._startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        """Start the process and wait until its port accepts connections.

        Raises:
            BenchError: it exited, or its port did not open in time; the
                message has the end of its log.
        """
        with open(self._log_path, 'ab') as log:
            # NOTE: A session of its own keeps a Ctrl-C in the terminal away
            #   from the server, so that it is stopped in order, by stop(); the
            #   parent-death signal stops it if this process is killed.
            self.process = subprocess.Popen(
                self.args,
                env=self._env,
                cwd=self._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        ready = wait_until(
            lambda: port_open(self.port), self.process, self._startup_timeout
        )
        if not ready:
            self.stop()
            log_text = self._log_path.read_text(errors='replace').strip()
            program = pathlib.Path(self.args[0]).name
            raise BenchError(
                f'{self.name}: {program} did not start on port {self.port}.\n'
                f'Command: {" ".join(self.args)}\nIts log:\n{log_text[-LOG_CHARS:]}'
            )

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of what the server logged, for an error message."""
        try:
            text = self._log_path.read_text(errors='replace')
        except OSError:
            return ''
        return '\n'.join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Uvicorn(Server):
    """``python -m uvicorn APP *FLAGS --port PORT *EXTRA`` on a free loopback port."""

    def __init__(
        self,
        name: str,
        app: str,
        flags: Sequence[str],
        env: dict[str, str],
        log_path: pathlib.Path,
        extra: Sequence[str] = (),
        *,
        cwd: pathlib.Path = ROOT,
        startup_timeout: float = 60.0,
    ) -> None:
        port = free_port()
        args = [
            sys.executable, '-m', 'uvicorn', app,
            *flags, '--port', str(port), *extra,
        ]  # fmt: skip
        super().__init__(
            name,
            args,
            port,
            env,
            log_path,
            cwd=cwd,
            startup_timeout=startup_timeout,
        )


def child_json(args: Sequence[str], **kwargs: Any) -> Any:
    """Run ``args`` to the end (it must succeed); what it printed, as JSON."""
    done = subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)
    return json.loads(done.stdout)


def table(
    lines: Sequence[Sequence[Any]],
    *,
    sep: str = '  ',
    cross: str | None = None,
    right: bool = False,
) -> str:
    """Columns as wide as their widest cell, and a rule under the first line.

    ``sep`` goes between the cells of a line, ``cross`` between the rule's
    dashes (as many dashes as ``sep`` has characters, unless given). Cells
    are aligned left, or with ``right`` right; trailing blanks are cut.
    """
    cells = [[str(cell) for cell in line] for line in lines]
    widths = [max(len(line[at]) for line in cells) for at in range(len(cells[0]))]
    text = [
        sep.join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in cells
    ]
    rule = ('-' * len(sep) if cross is None else cross).join('-' * w for w in widths)
    text.insert(1, rule)
    return '\n'.join(text)


def fill_in(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    defaults: Mapping[str, int],
) -> None:
    """Give each option named in ``defaults`` that was not given its default.

    Exits through ``parser.error`` if any is below 1.
    """
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1')


def write_json(path: str, document: Any) -> None:
    """Write ``document`` to ``path`` (``--json``), and say so."""
    pathlib.Path(path).write_text(json.dumps(document, indent=2) + '\n')
    print(f'\nResults written to {path}')


def _terminated(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C does, so that every process started is stopped.
    raise KeyboardInterrupt


def guarded(script: str, work: Callable[[], int]) -> int:
    """Run ``work``, stopping on SIGTERM as on Ctrl-C; the exit status.

    ``work()``'s own status; 1, with the message, on a ``BenchError``; 130
    once interrupted (every process started stopped on the way out).
    """
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return work()
    except BenchError as ex:
        print(f'{script}: {ex}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('Interrupted; every process started was stopped.', file=sys.stderr)
        return 130

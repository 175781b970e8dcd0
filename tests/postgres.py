"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster.

:class:`PostgresServer` runs ``initdb`` into a temporary directory and starts
``postgres`` on a free loopback port, with its unix socket inside that
directory, so nothing of the machine's own clusters is used or touched. Each
test asks it for a database of its own (:meth:`PostgresServer.database`).
It can be stopped and started again on the same port and data directory (a
database restart), or killed outright (a crash).

PostgreSQL refuses to run as root. The tests run as root here and in CI, so
then the server runs as the ``postgres`` user that Debian's package creates,
and its directory is handed to that user.
"""

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import psutil

from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import free_port

SUPERUSER = 'asgilook'
STARTUP_TIMEOUT = 30.0


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are not installed, or the server did not start."""


def binaries():
    """The directory of the newest PostgreSQL's ``initdb`` and ``postgres``.

    Debian keeps them in ``/usr/lib/postgresql/<version>/bin``, off the PATH.
    """
    found = glob.glob('/usr/lib/postgresql/*/bin/postgres')

    def version(path):
        name = pathlib.Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    if found:
        return pathlib.Path(max(found, key=version)).parent
    on_path = shutil.which('postgres')
    if on_path and shutil.which('initdb', path=str(pathlib.Path(on_path).parent)):
        return pathlib.Path(on_path).parent
    raise PostgresUnavailable(
        'PostgreSQL is not installed: apt-get install postgresql (.ci/run does)'
    )


class PostgresServer:
    """A private PostgreSQL cluster on a free loopback port; a context manager.

    ``url`` is the superuser's URL (no password: trust authentication on
    loopback and the private socket only).
    """

    def __init__(self, port=None):
        self.bin = binaries()
        self.port = port or free_port()
        self.url = f'postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres'
        self._dir = pathlib.Path(tempfile.mkdtemp(prefix='asgilook-postgres-'))
        self.data = self._dir / 'data'
        self.sockets = self._dir / 'sockets'
        self.log_path = self._dir / 'postgres.log'
        self.process = None
        self._owner = None
        if os.geteuid() == 0:
            # NOTE: initdb and postgres refuse to run as root.
            try:
                self._owner = pwd.getpwnam('postgres')
            except KeyError:
                raise PostgresUnavailable(
                    'Running as root, and there is no postgres user to run '
                    "PostgreSQL as (Debian's postgresql package creates it)"
                ) from None
        self.sockets.mkdir()
        self._hand_over(self._dir)

    def _hand_over(self, path):
        if self._owner is not None:
            for root, _, names in os.walk(path):
                for name in [root, *(os.path.join(root, n) for n in names)]:
                    os.chown(name, self._owner.pw_uid, self._owner.pw_gid)

    def _run_as_owner(self):
        """Popen arguments that run a program as the cluster's owner."""
        if self._owner is None:
            return {}
        return {
            'user': self._owner.pw_uid,
            'group': self._owner.pw_gid,
            'extra_groups': [],
        }

    def initdb(self):
        done = subprocess.run(
            [
                self.bin / 'initdb', '--pgdata', self.data,
                '--username', SUPERUSER, '--auth', 'trust',
                '--encoding', 'UTF8', '--locale', 'C',
                # NOTE: Only initdb's own files skip fsync, to start faster;
                #   the server itself runs with fsync on.
                '--no-sync',
            ],
            check=False,
            capture_output=True,
            text=True,
            cwd=self._dir,
            **self._run_as_owner(),
        )  # fmt: skip
        if done.returncode:
            raise PostgresUnavailable(f'initdb failed: {done.stderr.strip()}')

    def start(self):
        """Start the server (again) and wait until it accepts connections."""
        if not self.data.exists():
            self.initdb()
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [
                    self.bin / 'postgres', '-D', self.data,
                    '-p', str(self.port),
                    '-c', 'listen_addresses=127.0.0.1',
                    '-c', f'unix_socket_directories={self.sockets}',
                    '-c', 'fsync=on',
                    '-c', 'synchronous_commit=on',
                    '-c', 'full_page_writes=on',
                    '-c', 'shared_buffers=16MB',
                    '-c', 'max_connections=200',
                    '-c', 'log_min_messages=warning',
                ],
                stdout=log,
                stderr=log,
                cwd=self._dir,
                start_new_session=True,
                preexec_fn=self._tied_to_us(),
                **self._run_as_owner(),
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise PostgresUnavailable(
                    f'postgres did not start on port {self.port}: '
                    + self.log_path.read_text(errors='replace')[-2000:]
                )
            time.sleep(0.05)
        return self.url

    @staticmethod
    def _tied_to_us():
        """A fast shutdown if the tests die: no cluster is left running.

        NOTE: Linux sends the signal when the *thread* that started the
        process ends, so a server (re)started from another thread (a test's
        ``asyncio.to_thread``) is not tied: it would stop with that thread.
        It is set after the change of user, which would clear it.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        return lambda: die_with_parent(signal.SIGINT)

    def ready(self):
        """Whether the server accepts connections (not just the port)."""
        return (
            subprocess.run(
                [
                    self.bin / 'pg_isready', '--quiet',
                    '--host', '127.0.0.1', '--port', str(self.port),
                    '--username', SUPERUSER, '--dbname', 'postgres',
                ],
                check=False,
            ).returncode
            == 0
        )  # fmt: skip

    def stop(self):
        """A fast shutdown: clients are disconnected, everything is written."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.process = None

    def restart(self):
        self.stop()
        return self.start()

    def _signal_all(self, sig):
        """Send ``sig`` to the postmaster and to every backend.

        NOTE: One by one: each backend is in a session of its own (PostgreSQL
        calls setsid() in them), not in the postmaster's process group.
        """
        postmaster = psutil.Process(self.process.pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)

    def kill(self):
        """SIGKILL the postmaster and every backend: a crash, to recover from."""
        if self.process is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self._signal_all(signal.SIGKILL)
            self.process.wait()
            self.process = None
            # NOTE: The next postmaster refuses to start while a backend of
            #   the last one still holds the shared memory.
            deadline = time.monotonic() + 10
            while self._backends_alive() and time.monotonic() < deadline:
                time.sleep(0.05)

    def _backends_alive(self):
        # NOTE: Every process of the server works in its data directory.
        return any(
            process.info['cwd'] == str(self.data)
            for process in psutil.process_iter(['cwd'])
        )

    def pause(self):
        """SIGSTOP every process of the server: it hangs, without a word."""
        self._signal_all(signal.SIGSTOP)

    def resume(self):
        self._signal_all(signal.SIGCONT)

    def psql(self, sql, database='postgres'):
        """Run ``sql`` with psql as the superuser; return what it printed."""
        done = subprocess.run(
            [
                self.bin / 'psql', '--no-psqlrc', '--quiet', '--tuples-only',
                '--no-align', '--set', 'ON_ERROR_STOP=1',
                '--host', '127.0.0.1', '--port', str(self.port),
                '--username', SUPERUSER, '--dbname', database,
                '--command', sql,
            ],
            check=False,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f'psql failed on {sql!r}: {done.stderr.strip()}')
        return done.stdout.strip()

    def database(self):
        """A new, empty database; its URL."""
        name = f'test_{uuid.uuid4().hex[:12]}'
        self.psql(f'CREATE DATABASE {name}')
        return f'postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}'

    def close(self):
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

"""Real processes for the end-to-end tests: uvicorn serving the app over TCP."""

import os
import signal
import socket
import subprocess
import sys

from asgilook.commands.processes import free_port
from asgilook.commands.processes import wait_until


def port_open(port):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port, process, timeout=20.0):
    if not wait_until(lambda: port_open(port), process, timeout):
        raise RuntimeError(f'nothing listens on port {port} ({process.args})')


def stop(process, timeout=20.0):
    """SIGTERM (so uvicorn shuts down its lifespan), then SIGKILL if stuck."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Uvicorn:
    """``uvicorn asgilook.asgi:app`` on a free loopback port.

    ``args`` go to uvicorn. Optional, by keyword: ``env``, more environment
    variables (``ASGI_LOOK_REDIS_TIMEOUT``, say); ``app``, another app to
    serve (with ``'--factory'`` in ``args`` for a factory); ``stderr``, where
    uvicorn's log goes (a file opened by the caller).
    """

    def __init__(
        self,
        storage_path,
        redis_url,
        *args,
        env=None,
        app='asgilook.asgi:app',
        stderr=None,
    ):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        environment = dict(os.environ)
        environment.update(env or {})
        environment['ASGI_LOOK_STORAGE_PATH'] = str(storage_path)
        environment['ASGI_LOOK_REDIS_URL'] = redis_url
        self.process = subprocess.Popen(
            [
                sys.executable, '-m', 'uvicorn', app,
                '--host', '127.0.0.1', '--port', str(self.port), *args,
            ],
            env=environment,
            stderr=stderr,
        )  # fmt: skip
        wait_for_port(self.port, self.process)

    def stop(self):
        return stop(self.process)

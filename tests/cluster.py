"""Machines of one service for the end-to-end tests, and the bucket they share.

A :class:`Deployment` is what the machines of one service have in common:
a Redis, a PostgreSQL database, where pictures are kept (an ``s3://`` URL
and the AWS variables, or nothing for each machine's own directory) and an
encryption key, if any. Each :class:`Machine` it starts is a real uvicorn
process with a storage directory of its own, empty at first, and a log
file (uvicorn's stderr, where the app logs too). :meth:`Deployment.close`
stops every machine it started, whatever happened to them.

:class:`Bucket` reads and writes the objects under a deployment's prefix
directly, with :class:`~asgilook.storage.blobs.s3.S3Blobs` (no app, no key):
what is really stored there; or opened as a service with only the keys given
would open it.

A :class:`Command` is ``python -m asgilook ...`` run as a real process (the
``migrate`` and ``rekey`` commands, say), with a machine's environment.
"""

import asyncio
import contextlib
import itertools
import os
import pathlib
import subprocess
import sys
import uuid

from asgilook.storage.blobs.s3 import S3Blobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.crypto import Keyring
from tests.servers import Uvicorn

#: The magic numbers of the picture formats a storage directory could hold,
#: and of a sealed object.
PICTURE_MAGIC = (b'\xff\xd8\xff', b'GIF8', b'\x89PNG', b'RIFF', b'\x00ALKSEAL')


class Machine:
    """One uvicorn process of a deployment, on a storage directory of its own."""

    def __init__(self, name, directory, redis_url, env, log_path):
        self.name = name
        self.directory = directory
        self.env = env
        self.log_path = log_path
        with open(log_path, 'ab') as log:
            # NOTE: Popen keeps a duplicate of the descriptor: the file may
            #   be closed here, the process goes on writing to it.
            self.server = Uvicorn(directory, redis_url, env=env, stderr=log)

    @property
    def url(self):
        return self.server.url

    @property
    def process(self):
        return self.server.process

    def log(self):
        """Everything the process wrote to stderr so far."""
        return self.log_path.read_text(errors='replace')

    def kill(self):
        """``kill -9``: no lifespan shutdown, nothing flushed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self):
        return self.server.stop()

    def __repr__(self):
        return f'<Machine {self.name} {self.url}>'


class Deployment:
    """The machines of one service: one database, one Redis, one store.

    Args:
        root: A directory for the machines' storage directories and logs.
        redis_url: The Redis every machine uses.
        database_url: The PostgreSQL database of the index; None: each
            machine's own SQLite file.
        storage_url: ``s3://BUCKET/PREFIX``; None: each machine's directory.
        aws: The AWS variables of the S3 server.
        key: The encryption key (base64), or None.
    """

    def __init__(
        self, root, redis_url, database_url=None, storage_url=None, aws=None, key=None
    ):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.storage_url = storage_url
        # NOTE: Every setting of the storage spelt out, empty when unset, so
        #   that nothing of the environment the tests run in leaks in.
        self.env = {
            'ASGI_LOOK_DATABASE_URL': database_url or '',
            'ASGI_LOOK_STORAGE_URL': storage_url or '',
            'ASGI_LOOK_RENDITIONS_URL': '',
            'ASGI_LOOK_ENCRYPTION_KEY': key or '',
            'ASGI_LOOK_ENCRYPTION_OLD_KEYS': '',
            **(aws or {}),
        }
        self.machines = []
        self._numbers = itertools.count(1)

    def start(self, name, directory=None, **env):
        """A new machine on an empty directory (or ``directory``); ``env``
        overrides the deployment's settings."""
        number = next(self._numbers)
        directory = directory or self.root / f'{name}-{number}'
        machine = Machine(
            name,
            directory,
            self.redis_url,
            {**self.env, **env},
            self.root / f'{name}-{number}.log',
        )
        self.machines.append(machine)
        return machine

    def restart(self, machine, **env):
        """Stop ``machine`` and start it again on its directory, with ``env``
        changed."""
        machine.stop()
        return self.start(machine.name, machine.directory, **{**machine.env, **env})

    def close(self):
        for machine in self.machines:
            # NOTE: One that cannot be stopped must not keep the others up.
            with contextlib.suppress(Exception):
                machine.stop()


class Bucket:
    """The objects under one prefix of an S3 bucket, read and written raw."""

    def __init__(self, server, prefix=None):
        self.server = server
        self.prefix = prefix or f'e2e-{uuid.uuid4().hex[:12]}'
        self.url = f'{server.url}/{self.prefix}'

    def _blobs(self):
        return S3Blobs(self.server.bucket, self.prefix, self.server.environ)

    def keys(self, prefix=''):
        """Every key under the prefix (and under ``prefix`` within it)."""

        async def listed():
            return sorted([item.key async for item in self._blobs().list(prefix)])

        return asyncio.run(listed())

    def get(self, key):
        """The stored bytes of an object (ciphertext, if sealed); None if absent."""

        async def read():
            found = await self._blobs().open(key, 1 << 40)
            return None if found is None else found.body

        return asyncio.run(read())

    def put(self, key, data):
        asyncio.run(self._blobs().put(key, data))

    def plaintext(self, key, encryption_key=None):
        """The bytes of an object as a service with only ``encryption_key``
        (base64; None: no key) reads it: a sealed object opened and verified,
        a plain one as it is. Raises DamagedObject if it does not open."""

        async def read():
            keyring = Keyring.from_settings(encryption_key, None)
            found = await SealedBlobs(self._blobs(), keyring).open(key, 1 << 40)
            return None if found is None else found.body

        return asyncio.run(read())

    def objects(self, prefix=''):
        """Every object under ``prefix``: its key and stored bytes."""
        return {key: self.get(key) for key in self.keys(prefix)}


class Command:
    """``python -m asgilook ARGS`` as a real process, with ``env`` over the
    tests' environment; a context manager that kills it if it is left running
    (a test that failed meanwhile)."""

    #: Long enough for any command on the few pictures of a test.
    TIMEOUT = 90

    def __init__(self, *args, env):
        self.args = [sys.executable, '-m', 'asgilook', *map(str, args)]
        self.process = subprocess.Popen(
            self.args,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def running(self):
        return self.process.poll() is None

    def result(self):
        """Wait for its end: its exit status, stdout and stderr."""
        out, err = self.process.communicate(timeout=self.TIMEOUT)
        return self.process.returncode, out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.running():
            self.process.kill()
        self.process.communicate()


def run_command(*args, env):
    """Run ``python -m asgilook ARGS`` to its end: exit status, stdout, stderr."""
    with Command(*args, env=env) as command:
        return command.result()


def pictures_in(directory):
    """The files in a storage directory that hold pictures, or are where
    pictures are kept (``images/``, ``thumbnails/``)."""
    directory = pathlib.Path(directory)
    found = []
    for path in sorted(directory.rglob('*')):
        if not path.is_file():
            continue
        relative = path.relative_to(directory)
        with open(path, 'rb') as file:
            head = file.read(16)
        if relative.parts[0] in ('images', 'thumbnails') or head.startswith(
            PICTURE_MAGIC
        ):
            found.append(str(relative))
    return found

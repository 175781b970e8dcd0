"""A real nginx in front of uvicorn, configured as docs/operations.rst says.

Debian's ``nginx`` (``scripts/system-packages.sh`` installs it), started as an
unprivileged process (``nobody`` when the tests run as root) on a free
loopback port, with its configuration, pid file, logs and temporary files
in a folder of its own: ``nginx -c CONF -p FOLDER -g 'daemon off;'``.

The configuration is the one of *Under a path prefix* in docs/operations.rst,
read from the page itself: its first ``nginx`` block (the prefix stripped)
whole, or with the locations of its second (the prefix passed on), pointed
at the test's uvicorn and listening on the test's port.
"""

import os
import pathlib
import pwd
import re
import shutil
import subprocess
import tempfile

from asgilook.commands.processes import free_port
from tests.servers import stop
from tests.servers import wait_for_port

NGINX = '/usr/sbin/nginx'
OPERATIONS = pathlib.Path(__file__).parent.parent / 'docs' / 'operations.rst'
PREFIX = '/gallery'
#: The two ways a proxy serves the app under ``PREFIX``.
STRIPS = 'strips'
PASSES = 'passes'
# What the docs' configuration points at and listens on.
DOCS_UPSTREAM = 'server 127.0.0.1:8000;'
DOCS_LISTEN = 'listen 80;'

# NOTE: The paths that Debian's build puts under /var/lib/nginx and /run,
#   which an unprivileged nginx cannot write.
CONFIG = """\
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
worker_processes 1;

events {{
    worker_connections 256;
}}

http {{
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;

{http}
}}
"""


def documented():
    """The ``nginx`` blocks of *Under a path prefix* in docs/operations.rst."""
    page = OPERATIONS.read_text()
    section = page.split('\nUnder a path prefix\n', 1)[1].split('\n----', 1)[0]
    blocks = re.findall(
        r'\.\. code-block:: nginx\n\n((?:    .*\n|\n)+)', section + '\n'
    )
    return [_dedent(block) for block in blocks]


def _dedent(block):
    lines = block.rstrip('\n').split('\n')
    return '\n'.join(line[4:] for line in lines) + '\n'


def configuration(style, upstream_port, port):
    """The docs' configuration of ``style``, for these ports."""
    stripping, passing = documented()
    http = stripping
    if style == PASSES:
        head, _, _ = stripping.partition('\n    location ')
        locations = ''.join(
            f'    {line}\n' if line else '\n' for line in passing.split('\n')[:-1]
        )
        http = f'{head}\n{locations}}}\n'
    assert DOCS_UPSTREAM in http and DOCS_LISTEN in http, http
    http = http.replace(DOCS_UPSTREAM, f'server 127.0.0.1:{upstream_port};')
    return http.replace(DOCS_LISTEN, f'listen 127.0.0.1:{port};')


class Nginx:
    """nginx on a free loopback port, in front of uvicorn on ``upstream_port``."""

    def __init__(self, style, upstream_port):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix='asgilook-nginx-'))
        http = configuration(style, upstream_port, self.port)
        conf = self.folder / 'nginx.conf'
        conf.write_text(CONFIG.format(folder=self.folder, http=http))
        user = None
        if os.geteuid() == 0:
            # NOTE: Not as root: its workers would be nobody all the same.
            user = 'nobody'
            nobody = pwd.getpwnam(user)
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
        self.stderr = open(self.folder / 'stderr.log', 'w+')
        self.process = subprocess.Popen(
            [NGINX, '-c', str(conf), '-p', f'{self.folder}/', '-g', 'daemon off;'],
            stderr=self.stderr,
            user=user,
        )
        try:
            wait_for_port(self.port, self.process)
        except RuntimeError:
            said = self.log()
            self.stop()
            raise RuntimeError(f'nginx did not start: {said}') from None

    def log(self):
        """What nginx said, on its stderr and in its error log."""
        self.stderr.seek(0)
        said = self.stderr.read()
        error_log = self.folder / 'error.log'
        if error_log.exists():
            said += error_log.read_text()
        return said

    def stop(self):
        status = stop(self.process)
        self.stderr.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        return status

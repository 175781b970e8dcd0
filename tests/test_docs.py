"""The README's examples, pasted into a shell, against a real service."""

import json
import os
import pathlib
import pty
import re
import subprocess
import sys

import docutils.core
import httpx
import PIL.Image
import pytest
import redis

import asgilook.config
from tests.conftest import draw_image
from tests.servers import Uvicorn

README = pathlib.Path(__file__).parent.parent / 'README.rst'


def usage_commands():
    """The ``$ `` lines of the README's "Using it" section, in order."""
    text = README.read_text()
    section = text[text.index('\nUsing it\n') : text.index('The image document')]
    return [line.strip()[2:] for line in section.splitlines()
            if line.strip().startswith('$ ')]  # fmt: skip


def client_script(client):
    """The commands a curl user (or an HTTPie user) pastes: the other's are left out."""
    other = 'http ' if client == 'curl' else 'curl '
    return [command for command in usage_commands() if not command.startswith(other)]


def test_the_section_has_curl_and_httpie_for_every_route():
    commands = usage_commands()
    routes = ('/images', '/images?limit=1', '/images/$ID.jpeg', '$THUMB', '$ANIMATION')
    for route in routes:
        assert any(c.startswith('curl') and route in c for c in commands), route
        assert any(c.startswith('http ') and route in c for c in commands), route
    for method in ('DELETE',):
        assert any(c.startswith('curl') and method in c for c in commands)
        assert any(c.startswith('http ' + method) for c in commands)


@pytest.mark.e2e
@pytest.mark.parametrize('client', ['curl', 'http'])
def test_usage_examples_work_when_pasted(tmp_path, redis_server, client):
    redis.Redis.from_url(redis_server.url).flushall()
    service = Uvicorn(tmp_path / 'storage', redis_server.url)
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'photo.jpg').write_bytes(draw_image((800, 600), format='JPEG'))
    frames = [PIL.Image.new('RGB', (40, 30), colour) for colour in ('red', 'blue')]
    frames[0].save(work / 'animation.gif', save_all=True, append_images=frames[1:])

    script = '\n'.join(['set -e', *client_script(client)])
    script = script.replace('127.0.0.1:8000', f'127.0.0.1:{service.port}')
    script = script.replace(':8000', f':{service.port}')
    env = dict(os.environ)
    env['PATH'] = f'{pathlib.Path(sys.executable).parent}:{env["PATH"]}'
    # HTTPie reads a body from stdin unless it is a terminal, as it is for a
    # person pasting the examples: give it one.
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            ['bash', '-c', script],
            cwd=work,
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )
        deleted = httpx.get(f'{service.url}/images')
    finally:
        os.close(terminal)
        os.close(controller)
        service.stop()

    assert done.returncode == 0, done.stderr
    with PIL.Image.open(work / 'picture.jpeg') as picture:
        assert (picture.format, picture.size) == ('JPEG', (800, 600))
    with PIL.Image.open(work / 'thumb.jpeg') as thumb:
        assert (thumb.format, thumb.size) == ('JPEG', (400, 300))
    with PIL.Image.open(work / 'animation.webp') as animation:
        assert (animation.format, animation.n_frames) == ('WEBP', 2)
    # The kept upload was deleted; the two shown ones (raw, form) and the
    # animation remain, and no listing ever showed a delete token.
    kept = json.loads((work / 'upload.json').read_text())
    remaining = [document['id'] for document in deleted.json()]
    assert len(remaining) == 3 and kept['id'] not in remaining
    assert len(re.findall(r'"delete_token": "[^"]+"', done.stdout)) == 2
    if client == 'curl':
        assert 'x-asgilook-cache: miss' in done.stdout.lower()


def test_readme_is_valid_restructuredtext():

    docutils.core.publish_string(
        README.read_text(),
        writer='null',
        settings_overrides={'halt_level': 2, 'report_level': 2},
    )


def test_every_environment_variable_is_documented():

    package = pathlib.Path(asgilook.config.__file__).parent
    source = ''.join(path.read_text() for path in package.rglob('*.py'))
    names = set(re.findall(r'ASGI_LOOK_[A-Z_]+', source))
    assert 'ASGI_LOOK_REDIS_MAXMEMORY' in names
    assert (
        sorted(name for name in names if f'``{name}``' not in README.read_text()) == []
    )

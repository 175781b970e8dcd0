"""The documentation, kept true: README.rst and docs/*.rst.

The examples of docs/usage.rst and the README's first upload, pasted into a
shell, against a real service; every page valid reStructuredText; every
setting the code reads declared and documented, in a table that matches
:data:`asgilook.settings.SETTINGS`; every route of the app shown with curl and
with HTTPie.

``python -m tests.test_docs`` prints the settings table of
docs/configuration.rst, as it should be.
"""

import difflib
import json
import os
import pathlib
import pty
import re
import shlex
import subprocess
import sys
import textwrap

import docutils.core
import falcon.inspect
import httpx
import PIL.Image
import pytest
import redis

import asgilook.settings
from asgilook.config import Config
from asgilook.http.app import create_app
from tests.helpers import draw_image
from tests.servers import Uvicorn

ROOT = pathlib.Path(__file__).parent.parent
README = ROOT / 'README.rst'
DOCS = ROOT / 'docs'
USAGE = DOCS / 'usage.rst'
CONFIGURATION = DOCS / 'configuration.rst'
PAGES = [README, *sorted(DOCS.glob('*.rst'))]

#: The section of docs/usage.rst whose examples run in order, and the README's.
USAGE_EXAMPLES = 'The routes'
FIRST_UPLOAD = 'A first upload'

TABLE_BEGIN = '.. BEGIN SETTINGS TABLE'
TABLE_END = '.. END SETTINGS TABLE'


def titles(lines):
    """(line number, adornment character) of every section title of a page."""
    for number, (line, underline) in enumerate(zip(lines, lines[1:], strict=False)):
        adornment = set(underline)
        if (
            line.strip()
            and not line[0].isspace()
            and len(adornment) == 1
            and adornment <= set('=-~^"*+#')
            and len(underline) >= len(line)
        ):
            yield number, underline[0]


def section(path, title):
    """The text of a page's section, from its title to the next of its level."""
    lines = path.read_text().splitlines()
    higher = set()
    found = None
    for number, adornment in titles(lines):
        if found is None:
            higher.add(adornment)
            if lines[number] == title:
                found = number
        elif adornment in higher:
            return '\n'.join(lines[found:number])
    assert found is not None, f'{path.name} has no section titled {title!r}'
    return '\n'.join(lines[found:])


def commands(text):
    """The ``$ `` lines of a piece of reStructuredText, in order."""
    return [line.strip()[2:] for line in text.splitlines()
            if line.strip().startswith('$ ')]  # fmt: skip


def client_script(lines, client):
    """The commands a curl user (or an HTTPie user) pastes: the other's are left out."""
    other = 'http ' if client == 'curl' else 'curl '
    return [command for command in lines if not command.startswith(other)]


def paste(lines, client, work, service):
    """Run one client's lines as a shell would, against ``service``."""
    script = '\n'.join(['set -e', *client_script(lines, client)])
    script = script.replace('127.0.0.1:8000', f'127.0.0.1:{service.port}')
    script = script.replace(':8000', f':{service.port}')
    env = dict(os.environ)
    env['PATH'] = f'{pathlib.Path(sys.executable).parent}:{env["PATH"]}'
    # HTTPie reads a body from stdin unless it is a terminal, as it is for a
    # person pasting the examples: give it one.
    controller, terminal = pty.openpty()
    try:
        return subprocess.run(
            ['bash', '-c', script],
            cwd=work,
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(terminal)
        os.close(controller)


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

    try:
        done = paste(commands(section(USAGE, USAGE_EXAMPLES)), client, work, service)
        deleted = httpx.get(f'{service.url}/images')
    finally:
        service.stop()

    assert done.returncode == 0, done.stderr
    part = (work / 'first-kilobyte.part').read_bytes()
    assert part == (work / 'picture.jpeg').read_bytes()[:1024]
    with PIL.Image.open(work / 'picture.jpeg') as picture:
        assert (picture.format, picture.size) == ('JPEG', (800, 600))
    with PIL.Image.open(work / 'thumb.jpeg') as thumb:
        assert (thumb.format, thumb.size) == ('JPEG', (400, 300))
    with PIL.Image.open(work / 'animation.webp') as animation:
        assert (animation.format, animation.n_frames) == ('WEBP', 2)
    assert '/static/gallery.js?v=' in (work / 'gallery.html').read_text()
    # The GIF kept as uploaded: curl -J names it after the picture.
    animated = json.loads((work / 'animated.json').read_text())
    name = f'asgilook-{animated["id"]}.gif' if client == 'curl' else 'original.gif'
    with PIL.Image.open(work / name) as original:
        assert (original.format, original.n_frames) == ('GIF', 2)
    # The kept upload was deleted; the two shown ones (raw, form) and the
    # animation remain, and no listing ever showed a delete token.
    kept = json.loads((work / 'upload.json').read_text())
    remaining = [document['id'] for document in deleted.json()]
    assert len(remaining) == 3 and kept['id'] not in remaining
    assert len(re.findall(r'"delete_token": "[^"]+"', done.stdout)) == 2
    if client == 'curl':
        assert 'x-asgilook-cache: miss' in done.stdout.lower()


@pytest.mark.e2e
@pytest.mark.parametrize('client', ['curl', 'http'])
def test_the_readme_first_upload_works_when_pasted(tmp_path, redis_server, client):
    redis.Redis.from_url(redis_server.url).flushall()
    service = Uvicorn(tmp_path / 'storage', redis_server.url)
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'photo.jpg').write_bytes(draw_image((800, 600), format='JPEG'))

    try:
        lines = commands(section(README, FIRST_UPLOAD))
        done = paste(lines, client, work, service)
        listed = httpx.get(f'{service.url}/images').json()
    finally:
        service.stop()

    assert done.returncode == 0, done.stderr
    assert any(line.startswith(client + ' ') for line in lines), lines
    assert len(listed) == 1 and listed[0]['size'] == [800, 600]
    # The upload's answer shows its delete token, this once; the listing not.
    assert len(re.findall(r'"delete_token": "[^"]+"', done.stdout)) == 1
    assert done.stdout.count(listed[0]['id']) >= 2


@pytest.mark.parametrize('page', PAGES, ids=lambda page: page.name)
def test_every_page_is_valid_restructuredtext(page):
    docutils.core.publish_string(
        page.read_text(),
        source_path=str(page),
        writer='null',
        settings_overrides={'halt_level': 2, 'report_level': 2},
    )


def test_the_readme_names_every_page_of_the_docs():
    readme = README.read_text()
    missing = [page.name for page in PAGES[1:] if f'docs/{page.name}' not in readme]
    assert missing == [], 'list these pages under "The documentation" in README.rst'


def test_every_environment_variable_is_declared_and_documented():
    package = ROOT / 'asgilook'
    source = ''.join(path.read_text() for path in package.rglob('*.py'))
    names = set(re.findall(r'ASGI_LOOK_[A-Z_]+', source))
    declared = {setting.variable for setting in asgilook.settings.SETTINGS}
    documented = CONFIGURATION.read_text()
    assert 'ASGI_LOOK_REDIS_MAXMEMORY' in names
    assert sorted(names - declared) == [], 'declare these in asgilook/settings.py'
    assert sorted(name for name in names if f'``{name}``' not in documented) == []


def default_of(setting):
    """A setting's default, as the table shows it."""
    if setting.default is None:
        return f'``{setting.shown}``' if setting.shown else '(unset)'
    value = getattr(Config, setting.default)
    if isinstance(value, tuple) and value:
        value = ','.join(value)
    if value == '':
        return '(empty)'
    return '(unset)' if value in (None, ()) else f'``{value}``'


def literal(help_text):
    """A setting's help as reStructuredText: its `code` and NAMES as ``code``."""
    help_text = re.sub(r'(?<!`)`([^`]+)`(?!`)', r'``\1``', help_text)
    # NOTE: ASGI_LOOK_X and AWS_* would be references (a word ending in _).
    return re.sub(r'(?<![`\w])([A-Z][A-Z0-9]*_[A-Z0-9_]*\*?)', r'``\1``', help_text)


def settings_table():
    """The settings table of docs/configuration.rst, from SETTINGS."""

    def cell(text, first=False):
        return textwrap.fill(
            text,
            width=79,
            initial_indent='   * - ' if first else '     - ',
            subsequent_indent='       ',
            break_long_words=False,
            break_on_hyphens=False,
        )

    lines = [
        TABLE_BEGIN + ' (generated from asgilook.settings.SETTINGS by',
        '   tests/test_docs.py, which prints it: python -m tests.test_docs)',
        '',
        '.. list-table::',
        '   :header-rows: 1',
        '   :widths: 30 12 18 16 44',
        '',
        cell('Variable', first=True),
        cell('Kind'),
        cell('Default'),
        cell('``Config`` attribute'),
        cell('What it sets'),
    ]
    for setting in asgilook.settings.SETTINGS:
        meaning = literal(setting.help)
        attribute = f'``{setting.attribute}``' if setting.attribute else '(none)'
        lines += [
            cell(f'``{setting.variable}``', first=True),
            cell(setting.kind),
            cell(default_of(setting)),
            cell(attribute),
            cell(meaning),
        ]
    return '\n'.join([*lines, '', TABLE_END]) + '\n'


def test_the_settings_table_matches_the_declaration():
    text = CONFIGURATION.read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, (
        f'docs/configuration.rst needs the settings table, between a line '
        f'starting {TABLE_BEGIN!r} and {TABLE_END!r}: python -m tests.test_docs '
        f'prints it'
    )
    start = text.index(TABLE_BEGIN)
    table = text[start : text.index(TABLE_END, start) + len(TABLE_END)] + '\n'
    expected = settings_table()
    rows = set(re.findall(r'^   \* - ``(ASGI_LOOK_[A-Z_]+)``', table, re.MULTILINE))
    declared = {setting.variable for setting in asgilook.settings.SETTINGS}
    diff = ''.join(
        difflib.unified_diff(
            table.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            'docs/configuration.rst',
            'asgilook.settings.SETTINGS',
        )
    )
    assert table == expected, (
        f'The settings table of docs/configuration.rst is not what '
        f'asgilook/settings.py declares (rows for undeclared variables: '
        f'{sorted(rows - declared)}; declared but without a row: '
        f'{sorted(declared - rows)}). Replace the table, from {TABLE_BEGIN!r} to '
        f'{TABLE_END!r}, with what `python -m tests.test_docs` prints; change '
        f'asgilook/settings.py, not the table, to change a setting.\n{diff}'
    )


# NOTE: What the usage examples' shell variables hold, for finding the route
#   of each example without running it.
SAMPLES = {
    '$ID': 'f2375273-8049-4b10-b17e-8851db9ac7af',
    '$VERSION': '6c1f0a3b9e2d',
    '$THUMB': '/thumbnails/f2375273-8049-4b10-b17e-8851db9ac7af/400x300.jpeg',
    '$ANIMATION': '/images/f2375273-8049-4b10-b17e-8851db9ac7af.webp',
    '$ORIGINAL': '/images/f2375273-8049-4b10-b17e-8851db9ac7af/original',
    '$TOKEN': 'token',
}
HTTPIE_OPTIONS_WITH_VALUES = {'--output', '-o'}


def request_of(command):
    """(client, METHOD, path) that an example's curl or http line sends."""
    for variable, value in SAMPLES.items():
        command = command.replace(variable, value)
    words = shlex.split(command)
    if words[0] == 'curl':
        url = next(word for word in words if word.startswith('http://'))
        if '-X' in words:
            method = words[words.index('-X') + 1]
        elif '-I' in words:
            method = 'HEAD'
        elif {'--data-binary', '-F', '-d'} & set(words):
            method = 'POST'
        else:
            method = 'GET'
        path = url.split('://', 1)[1].partition('/')[1:]
        return 'curl', method, ''.join(path).split('?')[0]
    positional = []
    arguments = iter(words[1:])
    for word in arguments:
        if word in HTTPIE_OPTIONS_WITH_VALUES:
            next(arguments)
        elif not word.startswith('-'):
            positional.append(word)
    method = 'GET'
    if positional[0].isupper():
        method = positional.pop(0)
    path = '/' + positional[0].partition('/')[2]
    return 'http', method, path.split('?')[0]


def route_pattern(template):
    """A regular expression of the paths that a Falcon route template matches."""
    converters = {'uuid': '[0-9a-fA-F-]{32,36}', 'int': '[0-9]+'}
    parts = re.split(r'(\{[^}]+\})', template)
    pattern = ''
    for part in parts:
        field = re.fullmatch(r'\{\w+(?::(\w+))?\}', part)
        if field:
            pattern += converters.get(field.group(1), '[^/]+')
        else:
            pattern += re.escape(part)
    return re.compile(pattern)


def test_usage_shows_every_route_with_curl_and_httpie(config):
    info = falcon.inspect.inspect_app(create_app(config))
    # NOTE: HEAD is GET without the body, and OPTIONS lists the methods, on
    #   every route: the picture's examples stand for all of them.
    routes = {
        (route.path, method.method)
        for route in info.routes
        for method in route.methods
        if not method.internal and method.method not in ('HEAD', 'OPTIONS')
    }
    patterns = {path: route_pattern(path) for path, _ in routes}
    shown = set()
    for command in commands(USAGE.read_text()):
        if command.startswith(('curl ', 'http ')):
            client, method, path = request_of(command)
            for template, pattern in patterns.items():
                if pattern.fullmatch(path):
                    shown.add((client, template, method))
    missing = sorted(
        f'{client}: {method} {template}'
        for template, method in routes
        for client in ('curl', 'http')
        if (client, template, method) not in shown
    )
    assert missing == [], 'show these requests in docs/usage.rst'
    # And the spellings that the examples explain.
    for spelling in (
        '?limit=1',
        '?v=$VERSION',
        '?format=webp',
        'If-None-Match',
        'Access-Control-Request-Method',
    ):
        for client in ('curl ', 'http '):
            assert any(
                spelling in command and command.startswith(client)
                for command in commands(USAGE.read_text())
            ), f'show {spelling} with {client}in docs/usage.rst'


if __name__ == '__main__':
    print(settings_table(), end='')

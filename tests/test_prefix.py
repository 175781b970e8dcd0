"""The app under a path prefix: ``--root-path /gallery``, behind a proxy that
strips the prefix or passes it on (asgilook/http/mount.py).

First the app itself, as falcon.testing sends it scopes of both kinds: the
path below the root path (WSGI's way, falcon.testing's ``root_path=``) and the
path that includes it (ASGI's, uvicorn's). Then the real things: a
redis-server, ``asgilook serve --root-path /gallery``, and in front of it a
real nginx configured as docs/operations.rst says, in both ways.
"""

import json
import re
import signal
import subprocess
import sys

import falcon.testing
import httpx
import msgpack
import pytest
import redis

from asgilook.commands import cli
from asgilook.commands import serve
from asgilook.commands.processes import free_port
from asgilook.http.app import create_app
from asgilook.http.gallery import STATIC
from asgilook.http.mount import mount
from asgilook.http.mount import rooted
from tests.helpers import FIRST_IDS
from tests.helpers import decode
from tests.helpers import draw_image
from tests.nginx import PASSES
from tests.nginx import PREFIX
from tests.nginx import STRIPS
from tests.nginx import Nginx
from tests.servers import Uvicorn
from tests.servers import stop
from tests.servers import wait_for_port

IMAGE = f'/images/{FIRST_IDS[0]}.jpeg'
MSGPACK = {'Accept': 'application/msgpack'}
# The page's own URLs: its href, src and action attributes.
PAGE_URLS = re.compile(r' (?:href|src|action)="([^"]*)"')


def uvicorn_sends(client, method, path, **kwargs):
    """A request as uvicorn sends it under ``--root-path /gallery``: the root
    path in ``root_path`` and in front of the path."""
    return client.simulate_request(method, PREFIX + path, root_path=PREFIX, **kwargs)


def upload(client, path=PREFIX + '/images', **kwargs):
    resp = client.simulate_post(path, body=draw_image(), **kwargs)
    assert resp.status_code == 201, resp.text
    return resp


# The app, through falcon.testing


@pytest.mark.parametrize(
    ('path', 'root_path'),
    [
        # uvicorn's --root-path, the proxy stripping the prefix
        (PREFIX + '/healthz', PREFIX),
        # ... or passing it on: uvicorn put it in front once more
        (PREFIX + PREFIX + '/healthz', PREFIX),
        # a server that sends the path below the root path (falcon.testing's)
        ('/healthz', PREFIX),
        # uvicorn given the root path with a trailing slash
        (PREFIX + '//healthz', PREFIX + '/'),
    ],
)
def test_every_way_of_sending_the_root_path_reaches_the_route(client, path, root_path):
    resp = client.simulate_get(path, root_path=root_path)

    assert resp.status_code == 200, resp.text
    assert resp.json['status'] == 'ok'


def test_a_path_beside_the_prefix_is_no_path_of_the_app(client):
    resp = client.simulate_get(PREFIX + 'x/healthz', root_path=PREFIX)

    assert resp.status_code == 404
    assert resp.json['title'] == 'Not Found'


def test_the_root_path_itself_is_the_page(client):
    for path in (PREFIX, PREFIX + '/', PREFIX + PREFIX, PREFIX + PREFIX + '/'):
        resp = client.simulate_get(path, root_path=PREFIX)
        assert resp.status_code == 200, path
        assert resp.headers['Content-Type'] == 'text/html; charset=utf-8', path


def test_a_prefix_that_is_a_path_of_the_app_is_taken_off_once_when_it_routes(
    client,
):
    document = upload(client, '/images/images', root_path='/images').json

    # The proxy strips /images: uvicorn makes /images/images of /images.
    listing = client.simulate_get('/images/images', root_path='/images')
    image = client.simulate_get(f'/images{IMAGE}', root_path='/images')
    # The proxy passes it on: what is left after once is no route.
    passed = client.simulate_get('/images/images/images', root_path='/images')

    assert [doc['id'] for doc in listing.json] == [document['id']]
    assert decode(image.content).size == tuple(document['size'])
    assert passed.json == listing.json


def test_location_link_and_documents_name_the_prefix(client):
    first = upload(client, root_path=PREFIX)
    upload(client, root_path=PREFIX)
    document = first.json

    listing = uvicorn_sends(client, 'GET', '/images', params={'limit': 1})
    plain = client.simulate_get('/images', params={'limit': 1})

    assert first.headers['Location'] == f'{PREFIX}{IMAGE}'
    assert document['image'] == f'{PREFIX}{IMAGE}'
    assert document['thumbnails']
    for uri in document['thumbnails']:
        assert uri.startswith(f'{PREFIX}/thumbnails/{FIRST_IDS[0]}/')
    candidates = [part.split()[0] for part in document['srcset'].split(', ')]
    assert len(candidates) == len(document['thumbnails']) + 1
    assert all(uri.startswith(PREFIX + '/') for uri in candidates)
    assert plain.json[0]['image'] == IMAGE
    assert plain.json[0]['srcset'] == document['srcset'].replace(PREFIX, '')
    assert listing.headers['Link'] == (
        f'<{PREFIX}/images?limit=1&after={FIRST_IDS[0]}>; rel="next"'
    )
    assert listing.json == [
        {key: value for key, value in document.items() if key != 'delete_token'}
    ]
    following = client.simulate_get(
        listing.headers['Link'][1:].partition('>')[0], root_path=PREFIX
    )
    assert following.status_code == 200
    assert [doc['id'] for doc in following.json] == [FIRST_IDS[1]]


def test_the_caches_keep_each_prefixs_answers_apart(client):
    upload(client, root_path=PREFIX)
    upload(client, root_path=PREFIX)
    params = {'limit': 1}
    plain_link = f'</images?limit=1&after={FIRST_IDS[0]}>; rel="next"'

    # Each prefix: rendered once (memory keeps JSON, Redis MessagePack), then
    # answered from them with its own URLs, never from another prefix's.
    answers = {
        root_path: [
            client.simulate_get(
                f'{root_path}/images', params=params, root_path=root_path, **kwargs
            )
            for kwargs in ({}, {}, {'headers': MSGPACK}, {'headers': MSGPACK})
        ]
        for root_path in (PREFIX, '/other', '')
    }

    for root_path, answered in answers.items():
        states = [answer.headers['X-ASGILook-Cache'] for answer in answered]
        assert states == ['Miss', 'Hit', 'Miss', 'Hit'], root_path
        link = f'<{root_path}{plain_link[1:]}'
        documents = [answered[1].json, msgpack.unpackb(answered[3].content)]
        for answer in answered:
            assert answer.headers['Link'] == link
        for listed in documents:
            assert [doc['image'] for doc in listed] == [f'{root_path}{IMAGE}']
    assert answers[''][0].headers['Link'] == plain_link


def test_the_page_names_its_assets_and_form_below_the_prefix(client):
    plain = client.simulate_get('/')
    page = uvicorn_sends(client, 'GET', '/')

    urls = PAGE_URLS.findall(page.text)
    assert urls and all(url.startswith(PREFIX + '/') for url in urls), urls
    assert f'action="{PREFIX}/images"' in page.text
    # The same page otherwise, under a validator of its own.
    assert page.text.replace(f'="{PREFIX}/', '="/') == plain.text
    assert page.headers['ETag'] != plain.headers['ETag']
    again = uvicorn_sends(
        client, 'GET', '/', headers={'If-None-Match': page.headers['ETag']}
    )
    assert again.status_code == 304
    assets = [url for url in urls if url.startswith(f'{PREFIX}/static/')]
    assert len(assets) == len(urls) - 1
    for url in assets:
        asset = client.simulate_get(url, root_path=PREFIX)
        assert asset.status_code == 200, url
        name = url.partition('?')[0].rsplit('/', 1)[1]
        assert asset.content == (STATIC / name).read_bytes()


def test_a_root_path_is_written_in_urls_as_a_url_writes_it(client):
    root_path = '/my gallery'

    page = client.simulate_get('/', root_path=root_path)
    location = upload(client, '/images', root_path=root_path).headers['Location']

    assert 'src="/my%20gallery/static/gallery.js?v=' in page.text
    assert location == f'/my%20gallery{IMAGE}'


def test_the_script_finds_the_root_from_its_own_url():
    script = (STATIC / 'gallery.js').read_text()
    code = re.sub(r'/\*.*?\*/|^\s*//[^\n]*', '', script, flags=re.DOTALL | re.M)

    assert "new URL('..', document.currentScript.src).pathname" in code
    # Every URL it makes, at() makes from the root: none is written out.
    assert not re.findall(r"""['"`]/.*""", code)


def test_the_openapi_servers_name_the_prefix(client):
    plain = client.simulate_get('/openapi.json')
    prefixed = uvicorn_sends(client, 'GET', '/openapi.json')

    assert plain.json['servers'] == [{'url': '/'}]
    assert prefixed.json['servers'] == [{'url': PREFIX}]
    assert {**prefixed.json, 'servers': [{'url': '/'}]} == plain.json
    assert prefixed.headers['ETag'] != plain.headers['ETag']
    again = uvicorn_sends(
        client,
        'GET',
        '/openapi.json',
        headers={'If-None-Match': prefixed.headers['ETag']},
    )
    assert again.status_code == 304


def test_an_empty_root_path_is_none(config):
    app = create_app(config)
    client = falcon.testing.TestClient(app)

    resp = upload(client, '/images', root_path='')

    assert resp.headers['Location'] == IMAGE


def test_mount_leaves_a_scope_without_a_root_path_alone():
    scope = {'path': '/images', 'root_path': '/'}

    assert mount(scope, None) == ''
    assert scope == {'path': '/images', 'root_path': ''}


# asgilook serve --root-path


@pytest.mark.parametrize(
    ('given', 'passed'),
    [('/gallery', '/gallery'), ('/photos/2024/', '/photos/2024'), ('/', None)],
)
def test_serve_hands_the_root_path_to_uvicorn(tmp_path, monkeypatch, given, passed):
    ran = []
    monkeypatch.setattr(serve, '_serve', lambda args, env: ran.append(args) or 0)
    monkeypatch.setattr(serve, 'die_with_parent', lambda: None)

    status = cli.main(
        ['serve', '--storage', str(tmp_path), '--root-path', given],
        {'ASGI_LOOK_REDIS_URL': 'redis://127.0.0.1:7'},
    )

    assert status == 0
    (args,) = ran
    found = [args[i + 1] for i, arg in enumerate(args) if arg == '--root-path']
    assert found == ([passed] if passed else [])


@pytest.mark.parametrize('given', ['gallery', '/my gallery', '/a/../b', '/é'])
def test_serve_refuses_what_is_no_path_prefix(capsys, given):
    with pytest.raises(SystemExit) as exited:
        cli.main(['serve', '--root-path', given], {})

    assert exited.value.code == 2
    assert (
        f'{given!r} is not a path prefix, such as /gallery' in capsys.readouterr().err
    )


# The real things: redis-server, asgilook serve, nginx


@pytest.fixture(scope='module')
def service(tmp_path_factory, redis_server):
    """``asgilook serve --root-path /gallery`` on the session's Redis."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    folder = tmp_path_factory.mktemp('prefix')
    port = free_port()
    log = open(folder / 'serve.log', 'w+')
    process = subprocess.Popen(
        [
            sys.executable, '-m', 'asgilook', 'serve', '--port', str(port),
            '--storage', str(folder / 'storage'), '--redis-url', redis_server.url,
            '--root-path', PREFIX,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    wait_for_port(port, process, timeout=60)
    process.url = f'http://127.0.0.1:{port}'
    process.storage = folder / 'storage'
    yield process
    assert stop(process) in (0, -signal.SIGTERM)
    log.close()


@pytest.fixture(scope='module', params=[STRIPS, PASSES])
def proxy(request, service):
    """nginx in front of the service at /gallery/: it strips the prefix, or
    passes it on."""
    nginx = Nginx(request.param, int(service.url.rsplit(':', 1)[1]))
    yield nginx
    log = nginx.log()
    assert nginx.stop() == 0
    assert '[error]' not in log and '[alert]' not in log, log


@pytest.fixture
def http(proxy):
    """A client of nginx: every path it is given starts with the prefix."""
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        yield client


@pytest.mark.e2e
def test_an_upload_through_the_proxy_is_found_where_it_says(http):
    created = http.post(f'{PREFIX}/images', content=draw_image((640, 480)))
    document = created.json()
    image = http.get(created.headers['Location'])
    thumbnail = http.get(document['thumbnails'][0])

    assert created.status_code == 201
    assert created.headers['Location'] == document['image']
    assert document['image'].startswith(f'{PREFIX}/images/')
    assert image.status_code == 200
    assert decode(image.content).size == (640, 480)
    assert thumbnail.status_code == 200
    assert decode(thumbnail.content).size == (320, 240)


@pytest.mark.e2e
def test_the_listing_through_the_proxy_pages_below_the_prefix(http):
    for _ in range(2):
        http.post(f'{PREFIX}/images', content=draw_image((128, 128)))
    newest = [doc['id'] for doc in http.get(f'{PREFIX}/images?order=newest').json()]

    first = http.get(f'{PREFIX}/images', params={'order': 'newest', 'limit': 1})
    repeated = http.get(f'{PREFIX}/images', params={'order': 'newest', 'limit': 1})
    link = first.headers['Link']
    following = http.get(link[1:].partition('>')[0])

    assert link == (
        f'<{PREFIX}/images?limit=1&after={newest[0]}&order=newest>; rel="next"'
    )
    assert repeated.headers['X-ASGILook-Cache'] == 'Hit'
    assert repeated.headers['Link'] == link
    assert [doc['id'] for doc in following.json()] == [newest[1]]


@pytest.mark.e2e
def test_the_page_and_its_assets_through_the_proxy(http, proxy):
    page = http.get(f'{PREFIX}/')
    bare = http.get(PREFIX)

    assert page.status_code == 200
    assert page.headers['Content-Type'] == 'text/html; charset=utf-8'
    urls = PAGE_URLS.findall(page.text)
    assert f'{PREFIX}/images' in urls
    for url in urls:
        assert url.startswith(PREFIX + '/'), url
        if url != f'{PREFIX}/images':
            asset = http.get(url)
            assert asset.status_code == 200, url
            assert asset.headers['Cache-Control'] == (
                'public, max-age=31536000, immutable'
            )
    # nginx's own answer for the prefix without its slash.
    assert bare.status_code == 301
    assert bare.headers['Location'] == f'{proxy.url}{PREFIX}/'


@pytest.mark.e2e
def test_events_and_the_openapi_servers_through_the_proxy(http):
    servers = http.get(f'{PREFIX}/openapi.json').json()['servers']
    created = None
    with http.stream('GET', f'{PREFIX}/events') as stream:
        lines = stream.iter_lines()
        assert next(lines) == ': asgilook events'
        document = http.post(f'{PREFIX}/images', content=draw_image((96, 96))).json()
        kind = None
        for line in lines:
            if line.startswith('event: '):
                kind = line.removeprefix('event: ')
            elif line.startswith('data: ') and kind == 'image-created':
                created = json.loads(line.removeprefix('data: '))
                if created['id'] == document['id']:
                    break

    assert servers == [{'url': PREFIX}]
    assert stream.headers['Content-Type'] == 'text/event-stream'
    assert created == {
        key: value for key, value in document.items() if key != 'delete_token'
    }


@pytest.mark.e2e
def test_uvicorn_answers_with_the_prefix_and_without(service):
    for path in (f'{PREFIX}/healthz', '/healthz'):
        resp = httpx.get(service.url + path, timeout=30)
        assert resp.status_code == 200, path


@pytest.mark.e2e
def test_a_server_without_the_prefix_on_the_same_redis_gets_its_own_urls(
    http, service, redis_server
):
    for _ in range(2):
        http.post(f'{PREFIX}/images', content=draw_image((128, 128)))
    params = {'limit': 1}
    # MessagePack: kept in Redis only, never in a process's memory.
    proxied = http.get(f'{PREFIX}/images', params=params, headers=MSGPACK)
    plain = Uvicorn(service.storage, redis_server.url)
    try:
        direct = httpx.get(
            plain.url + '/images', params=params, headers=MSGPACK, timeout=30
        )
    finally:
        assert plain.stop() in (0, -signal.SIGTERM)

    first = msgpack.unpackb(proxied.content)[0]['id']
    assert proxied.headers['Link'] == (
        f'<{PREFIX}/images?limit=1&after={first}>; rel="next"'
    )
    # Its own entry: the documents it is sent name no prefix.
    assert direct.headers['X-ASGILook-Cache'] == 'Miss'
    assert msgpack.unpackb(direct.content)[0]['image'] == f'/images/{first}.jpeg'
    assert msgpack.unpackb(proxied.content)[0]['image'] == (
        f'{PREFIX}/images/{first}.jpeg'
    )
    assert direct.headers['Link'] == f'</images?limit=1&after={first}>; rel="next"'


def test_rooted_puts_the_prefix_on_the_urls_a_document_has():
    document = {'id': 'x', 'image': '/images/x.jpeg', 'animation': None}

    assert rooted(document, '') is document
    assert rooted(document, '/a b') == {
        'id': 'x',
        'image': '/a%20b/images/x.jpeg',
        'animation': None,
    }
    assert document['image'] == '/images/x.jpeg'

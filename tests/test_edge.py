"""At the edge: nosniff and CORS on every answer, 501 and one Allow, Cache-Status,
errors kept by no cache, the page's policy (asgilook/http/edge.py)."""

import re
import signal
import socket

import fakeredis
import falcon
import falcon.asgi
import falcon.inspect
import falcon.testing
import httpx
import msgpack
import pytest

from asgilook.config import Config
from asgilook.http.app import create_app
from asgilook.http.edge import ALLOWED_HEADERS
from asgilook.http.edge import EXPOSED
from asgilook.http.edge import MAX_AGE
from asgilook.http.edge import RECOGNISED
from asgilook.http.edge import Router
from asgilook.http.gallery import POLICY
from asgilook.http.gallery import STATIC
from asgilook.settings import origins
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image
from tests.servers import Uvicorn

IMAGE = f'/images/{FIRST_IDS[0]}.jpeg'
THUMBNAIL = f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg'
UNKNOWN = '/images/1a256a8a-2063-46ff-b53f-d04d5bcf5eee.jpeg'
SITE = 'https://example.org'
FRIEND = 'http://friend.example:8080'
STRANGER = 'https://stranger.example'
EXPOSED_TEXT = ', '.join(EXPOSED)


class Recorder:
    """The app, with the raw headers of every answer's start kept, in order."""

    def __init__(self, app):
        self.app = app
        self.starts = []
        self.falcon_requests = 0
        app.add_middleware(self)

    async def process_request(self, req, resp):
        self.falcon_requests += 1

    async def __call__(self, scope, receive, send):
        async def recording(message):
            if message['type'] == 'http.response.start':
                self.starts.append(list(message['headers']))
            await send(message)

        await self.app(scope, receive, recording)

    def last(self, name):
        """The values of ``name`` in the last answer, one per field line."""
        return [
            value.decode() for key, value in self.starts[-1] if key == name.encode()
        ]


@pytest.fixture
def edge(config):
    """A client of an app made with ``cors_origins``, and its Recorder."""

    def make(*cors_origins):
        if cors_origins:
            config.cors_origins = cors_origins
        recorder = Recorder(create_app(config))
        return falcon.testing.TestClient(recorder), recorder

    return make


def upload(client):
    """One picture, and the ETag of its original (given once: it is remembered)."""
    created = client.simulate_post('/images', body=draw_image())
    assert created.status_code == 201
    return client.simulate_get(IMAGE).headers['ETag']


def kinds_of_answers(etag):
    """(kind, method, path, query string, headers) of every kind of answer the
    service gives, memory's replays included, after :func:`upload`."""
    return [
        ('listing', 'GET', '/images', '', {}),
        ('listing from Redis', 'GET', '/images', '', {}),
        ('image replayed', 'GET', IMAGE, '', {}),
        ('thumbnail', 'GET', THUMBNAIL, '', {}),
        ('head', 'HEAD', THUMBNAIL, '', {}),
        ('304 replayed', 'GET', IMAGE, '', {'If-None-Match': etag}),
        ('206 replayed', 'GET', IMAGE, '', {'Range': 'bytes=0-9'}),
        ('416', 'GET', IMAGE, '', {'Range': 'bytes=99999999-'}),
        ('404', 'GET', UNKNOWN, '', {}),
        ('404 no route', 'GET', '/nothing', '', {}),
        ('400', 'GET', '/images', 'limit=0', {}),
        ('405', 'PUT', '/images', '', {}),
        ('501', 'PROPFIND', '/images', '', {}),
        ('options', 'OPTIONS', IMAGE, '', {}),
        ('401', 'DELETE', IMAGE, '', {}),
        ('414', 'GET', '/images', 'x=' + 'y' * 5000, {}),
        ('431', 'GET', '/', '', {'X-Junk': 'x' * 40_000}),
        ('page', 'GET', '/', '', {}),
        ('asset', 'GET', '/static/gallery.js', '', {}),
        ('health', 'GET', '/healthz', '', {}),
        ('metrics', 'GET', '/metrics', '', {}),
        ('document', 'GET', '/openapi.json', '', {}),
    ]


def ask(client, method, path, query, headers, origin=None):
    if origin is not None:
        headers = {**headers, 'Origin': origin}
    return client.simulate_request(
        method, path, query_string=query or None, headers=headers
    )


def test_every_answer_says_nosniff_and_that_any_origin_may_read(edge):
    client, recorder = edge()
    statuses = {}
    for kind, *request in kinds_of_answers(upload(client)):
        for origin in (None, SITE):
            statuses[kind] = ask(client, *request, origin=origin).status_code
            assert recorder.last('x-content-type-options') == ['nosniff'], kind
            assert recorder.last('access-control-allow-origin') == ['*'], kind
            exposed = recorder.last('access-control-expose-headers')
            assert exposed == [EXPOSED_TEXT], kind
            assert recorder.last('access-control-allow-credentials') == [], kind
            # The same answer for every origin: nothing to vary on.
            assert 'Origin' not in ', '.join(recorder.last('vary')), kind
    assert (statuses['304 replayed'], statuses['206 replayed']) == (304, 206)
    assert (statuses['414'], statuses['431'], statuses['501']) == (414, 431, 501)


@pytest.mark.parametrize(
    ('origin', 'allowed'),
    [(None, False), (SITE, True), (FRIEND, True), (STRANGER, False)],
)
def test_a_list_of_origins_names_the_origin_it_lets_read_and_varies_on_it(
    edge, origin, allowed
):
    client, recorder = edge(SITE, FRIEND)
    for kind, *request in kinds_of_answers(upload(client)):
        ask(client, *request, origin=origin)
        assert recorder.last('x-content-type-options') == ['nosniff'], kind
        named = recorder.last('access-control-allow-origin')
        assert named == ([origin] if allowed else []), kind
        exposed = recorder.last('access-control-expose-headers')
        assert exposed == ([EXPOSED_TEXT] if allowed else []), kind
        # One Vary field, which says Origin (after Accept, where it was; a
        # text's 200 says Accept-Encoding after it, see test_compression.py).
        (vary,) = recorder.last('vary')
        plain = vary.removesuffix(', Accept-Encoding')
        assert plain in ('Origin', 'Accept, Origin'), (kind, vary)


def test_the_memory_never_gives_one_origins_answer_to_another(edge):
    client, recorder = edge(SITE, FRIEND)
    etag = upload(client)
    for uri in (IMAGE, THUMBNAIL, '/images'):
        ask(client, 'GET', uri, '', {}, origin=SITE)
        assert recorder.last('access-control-allow-origin') == [SITE]
        handled = recorder.falcon_requests
        for origin in (STRANGER, FRIEND, None, SITE, FRIEND):
            for headers in ({}, {'If-None-Match': etag}):
                ask(client, 'GET', uri, '', headers, origin=origin)
                allowed = [origin] if origin in (SITE, FRIEND) else []
                assert recorder.last('access-control-allow-origin') == allowed
                assert len(recorder.last('vary')) == 1
        # All from memory, before Falcon.
        assert recorder.falcon_requests == handled, uri


@pytest.mark.parametrize(
    ('cors_origins', 'origin'),
    [(('*',), None), (('*',), SITE), ((SITE,), SITE), ((SITE,), STRANGER)],
)
@pytest.mark.parametrize('uri', [IMAGE, THUMBNAIL, '/images'])
def test_a_replay_has_every_header_of_the_apps_answer(edge, cors_origins, origin, uri):
    client, recorder = edge(*cors_origins)
    upload(client)
    ask(client, 'GET', uri, '', {}, origin)
    # NOTE: Another spelling of the URL is never remembered: the app answers.
    spelt, query = uri.replace(FIRST_IDS[0], FIRST_IDS[0].upper()), ''
    if spelt == uri:
        query = 'unknown=parameter'
    handled = recorder.falcon_requests
    answered = ask(client, 'GET', spelt, query, {}, origin)
    from_app = sorted(recorder.starts[-1])
    assert recorder.falcon_requests == handled + 1
    replayed = ask(client, 'GET', uri, '', {}, origin)
    assert recorder.falcon_requests == handled + 1
    assert replayed.content == answered.content
    hits = {b'x-asgilook-cache': b'Hit', b'cache-status': b'asgilook; hit'}
    hits[b'x-request-id'] = replayed.headers['X-Request-ID'].encode()  # its own
    assert sorted((name, hits.get(name, value)) for name, value in from_app) == sorted(
        recorder.starts[-1]
    )


def test_a_preflight_lets_other_sites_post_and_delete_with_a_token(edge):
    client, recorder = edge()
    for uri, method, headers, allowed in (
        (IMAGE, 'DELETE', 'authorization', 'DELETE, GET, HEAD, OPTIONS'),
        ('/images', 'POST', 'content-type', 'GET, HEAD, OPTIONS, POST'),
    ):
        resp = client.simulate_options(
            uri,
            headers={
                'Origin': SITE,
                'Access-Control-Request-Method': method,
                'Access-Control-Request-Headers': headers,
            },
        )
        assert (resp.status_code, resp.content) == (204, b'')
        assert resp.headers['Allow'] == allowed
        assert resp.headers['Access-Control-Allow-Methods'] == allowed
        assert resp.headers['Access-Control-Allow-Origin'] == '*'
        assert resp.headers['Access-Control-Max-Age'] == str(MAX_AGE)
        assert {'Authorization', 'Content-Type'} <= set(
            resp.headers['Access-Control-Allow-Headers'].split(', ')
        )
        assert resp.headers['Access-Control-Allow-Headers'] == ', '.join(
            ALLOWED_HEADERS
        )
        assert recorder.last('access-control-allow-credentials') == []
        assert resp.headers['Cache-Status'] == 'asgilook; fwd=method'
    # Without Access-Control-Request-Method, no preflight: the methods alone.
    plain = client.simulate_options(IMAGE, headers={'Origin': SITE})
    assert plain.status_code == 204
    assert plain.headers['Allow'] == 'DELETE, GET, HEAD, OPTIONS'
    assert 'Access-Control-Allow-Methods' not in plain.headers


def test_a_preflight_from_an_origin_not_listed_is_not_allowed(edge):
    client, _ = edge(SITE)
    headers = {'Access-Control-Request-Method': 'DELETE'}
    listed = client.simulate_options(IMAGE, headers={**headers, 'Origin': SITE})
    other = client.simulate_options(IMAGE, headers={**headers, 'Origin': STRANGER})
    assert listed.headers['Access-Control-Allow-Origin'] == SITE
    assert 'Access-Control-Allow-Origin' not in other.headers
    assert listed.headers['Vary'] == other.headers['Vary'] == 'Origin'


def concrete(template):
    """A path that the route ``template`` matches."""
    path = template.replace('{image_id:uuid}', FIRST_IDS[0])
    path = path.replace('{width:int}x{height:int}', '320x180')
    return path.replace('{name}', 'gallery.js')


def test_options_and_405_say_the_same_allow_on_every_route(config, edge):
    client, _ = edge()
    routes = falcon.inspect.inspect_app(create_app(config)).routes
    assert len(routes) >= 10
    for route in routes:
        path = concrete(route.path)
        methods = {method.method for method in route.methods if not method.internal}
        allow = client.simulate_options(path).headers['Allow']
        assert set(allow.split(', ')) == methods | {'OPTIONS'}, route.path
        for method in sorted(RECOGNISED - methods - {'OPTIONS', 'CONNECT'}):
            resp = client.simulate_request(method, path)
            assert resp.status_code == 405, (method, path)
            assert resp.headers['Allow'] == allow, (method, path)


def test_a_resources_own_options_is_its_own():
    class Resource:
        async def on_get(self, req, resp):
            pass

        async def on_options(self, req, resp):
            resp.set_header('Allow', 'GET')

    app = falcon.asgi.App(router=Router())
    app.add_route('/mine', Resource())
    del Resource.on_options
    app.add_route('/given', Resource())
    client = falcon.testing.TestClient(app)
    mine = client.simulate_options('/mine')
    assert (mine.status_code, mine.headers['Allow']) == (200, 'GET')
    given = client.simulate_options('/given')
    assert (given.status_code, given.headers['Allow']) == (204, 'GET, OPTIONS')


@pytest.mark.parametrize('method', ['FOO', 'PROPFIND', 'PURGE', 'LINK', 'M-SEARCH'])
@pytest.mark.parametrize('path', ['/images', IMAGE, '/nothing/here'])
def test_a_method_http_does_not_define_is_501_on_any_path(client, method, path):
    resp = client.simulate_request(method, path)
    assert resp.status_code == 501
    assert resp.json['title'] == 'Not Implemented'
    assert resp.json['description'].startswith(
        f'This service does not implement {method} for any URL.'
    )
    assert resp.headers['Cache-Control'] == 'no-store'
    assert resp.headers['X-ASGILook-Cache'] == 'Miss'
    assert resp.headers['Cache-Status'] == 'asgilook; fwd=method'
    packed = client.simulate_request(
        method, path, headers={'Accept': falcon.MEDIA_MSGPACK}
    )
    assert msgpack.unpackb(packed.content)['title'] == 'Not Implemented'


def test_every_error_is_kept_by_no_cache(edge):
    client, _ = edge()
    etag = upload(client)
    errors = set()
    for kind, method, path, query, headers in kinds_of_answers(etag):
        resp = ask(client, method, path, query, headers)
        if resp.status_code >= 400:
            errors.add(resp.status_code)
            assert resp.headers['Cache-Control'] == 'no-store', kind
    assert errors == {400, 401, 404, 405, 414, 416, 431, 501}
    # A 416 follows its picture's headers, but not its public max-age.
    unsatisfiable = client.simulate_get(IMAGE, headers={'Range': 'bytes=99999999-'})
    assert unsatisfiable.headers['ETag'] == etag
    assert unsatisfiable.headers['Cache-Control'] == 'no-store'


def test_cache_status_says_what_x_asgilook_cache_says(config):
    client = falcon.testing.TestClient(create_app(config))
    created = client.simulate_post('/images', body=draw_image())
    answers = [
        created,
        client.simulate_get('/images'),
        client.simulate_get('/images'),
        client.simulate_get(IMAGE),
        client.simulate_get(IMAGE),
        client.simulate_delete(
            IMAGE, headers={'Authorization': f'Bearer {created.json["delete_token"]}'}
        ),
    ]
    assert [
        (resp.headers['X-ASGILook-Cache'], resp.headers['Cache-Status'])
        for resp in answers
    ] == [
        ('Miss', 'asgilook; fwd=method'),
        ('Miss', 'asgilook; fwd=miss'),
        ('Hit', 'asgilook; hit'),
        ('Miss', 'asgilook; fwd=miss'),
        ('Hit', 'asgilook; hit'),
        ('Miss', 'asgilook; fwd=method'),
    ]

    # Redis is down: Bypass.
    server = fakeredis.FakeServer()
    server.connected = False
    config.redis_from_url = lambda url: fakeredis.FakeAsyncRedis(server=server)
    down = falcon.testing.TestClient(create_app(config)).simulate_get('/images')
    assert (down.headers['X-ASGILook-Cache'], down.headers['Cache-Status']) == (
        'Bypass',
        'asgilook; fwd=bypass',
    )


def test_the_page_says_what_it_may_do(client):
    page = client.simulate_get('/')
    for resp in (
        page,
        client.simulate_head('/'),
        client.simulate_get('/', headers={'If-None-Match': page.headers['ETag']}),
    ):
        assert resp.headers['Content-Security-Policy'] == POLICY
        assert resp.headers['Referrer-Policy'] == 'strict-origin-when-cross-origin'
    directives = dict(directive.split(' ', 1) for directive in POLICY.split('; '))
    assert directives['default-src'] == "'none'"
    assert directives['script-src'] == directives['style-src'] == "'self'"
    assert directives['img-src'] == "'self' data:"
    assert directives['connect-src'] == "'self'"
    assert directives['frame-ancestors'] == "'none'"
    assert 'unsafe' not in POLICY
    # The policy is the page's: its assets and the data have none.
    for uri in ('/static/gallery.js', '/images'):
        assert 'Content-Security-Policy' not in client.simulate_get(uri).headers


def test_the_page_has_nothing_inline_that_its_policy_would_refuse():
    page = (STATIC / 'index.html').read_text()
    assert re.findall(r'<script\b[^>]*>', page) == [
        '<script src="/static/gallery.js" defer>'
    ]
    assert '<style' not in page and ' style=' not in page
    assert not re.search(r'\son[a-z]+=', page), 'no inline event handlers'
    script = (STATIC / 'gallery.js').read_text()
    for refused in ('eval(', 'new Function', "setAttribute('style'", 'innerHTML'):
        assert refused not in script, refused


@pytest.mark.parametrize(
    ('raw', 'parsed'),
    [
        ('*', ('*',)),
        (' * ', ('*',)),
        ('', ()),
        ('https://Example.org/', ('https://example.org',)),
        (
            'https://example.org:443, http://a.example:8080',
            (
                'https://example.org',
                'http://a.example:8080',
            ),
        ),
        ('http://[::1]:8000,', ('http://[::1]:8000',)),
    ],
)
def test_cors_origins_are_read_as_browsers_send_them(tmp_path, raw, parsed):
    assert origins(raw) == parsed
    config = Config.from_environ(
        {'ASGI_LOOK_STORAGE_PATH': str(tmp_path), 'ASGI_LOOK_CORS_ORIGINS': raw}
    )
    assert config.cors_origins == parsed


@pytest.mark.parametrize(
    'raw',
    [
        'example.org',
        'https://example.org/gallery',
        'ftp://example.org',
        'https://user@example.org',
        'https://example.org:99999',
        'https://example.org:0',
        'https://example.org?x=1',
        'https://example.org#x',
        '*, https://example.org',
        'null',
    ],
)
def test_a_cors_origin_that_is_no_origin_is_refused(tmp_path, raw):
    with pytest.raises(ValueError) as caught:
        Config.from_environ(
            {'ASGI_LOOK_STORAGE_PATH': str(tmp_path), 'ASGI_LOOK_CORS_ORIGINS': raw}
        )
    assert str(caught.value) == (
        'ASGI_LOOK_CORS_ORIGINS must be `*`, or comma-separated origins such as '
        f'https://example.org, not {raw!r}'
    )


# End to end, through uvicorn.


def raw_request(port, method, path):
    """Status line and headers of one request sent as bytes (any method)."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as connection:
        connection.sendall(
            f'{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'.encode()
        )
        answer = b''
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = dict(line.lower().split(': ', 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.e2e
@pytest.mark.parametrize('http', ['httptools', 'h11'])
def test_methods_through_uvicorn(tmp_path, redis_server, http):
    server = Uvicorn(
        tmp_path,
        f'{redis_server.url}/6',
        '--http',
        http,
        # NOTE: A closed event stream is noticed at the next keep-alive.
        env={'ASGI_LOOK_EVENTS_KEEPALIVE': '1'},
    )
    try:
        answers = {
            method: raw_request(server.port, method, '/images')
            for method in ('PROPFIND', 'PURGE', 'FOO', 'PATCH', 'OPTIONS')
        }
        with httpx.Client(base_url=server.url) as client:
            preflight = client.options(
                IMAGE,
                headers={
                    'Origin': SITE,
                    'Access-Control-Request-Method': 'DELETE',
                    'Access-Control-Request-Headers': 'authorization',
                },
            )
            # A stream too: its headers go out before any event.
            with client.stream('GET', '/events') as events:
                streamed = events.headers
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    for method in ('PROPFIND', 'PURGE'):
        status, headers, body = answers[method]
        assert status == 501, method
        assert headers['content-type'] == falcon.MEDIA_JSON
        assert headers['x-content-type-options'] == 'nosniff'
        assert b'"title": "Not Implemented"' in body
    status, headers, body = answers['FOO']
    if http == 'h11':
        assert status == 501
    else:
        # NOTE: httptools (llhttp) knows a fixed list of methods, and uvicorn
        #   answers any other itself, before the app: documented.
        assert (status, body) == (400, b'Invalid HTTP request received.')
    assert answers['PATCH'][0] == 405
    assert answers['OPTIONS'][0] == 204
    assert answers['PATCH'][1]['allow'] == answers['OPTIONS'][1]['allow']
    assert streamed['x-content-type-options'] == 'nosniff'
    assert streamed['access-control-allow-origin'] == '*'
    assert preflight.status_code == 204
    assert preflight.headers['access-control-allow-origin'] == '*'
    assert preflight.headers['access-control-allow-methods'] == (
        'DELETE, GET, HEAD, OPTIONS'
    )

"""The access log and request ids (asgilook/http/access.py), the log's formats
(asgilook/logs.py), and `asgilook serve`'s log, read line by line from real
processes."""

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import falcon.testing
import httpx
import pytest

from asgilook import logs
from asgilook.commands.processes import free_port
from asgilook.http.access import ANSWER
from asgilook.http.access import AccessLog
from asgilook.http.access import new_id
from asgilook.http.limits import MAX_HEADERS
from asgilook.http.limits import MAX_TARGET
from asgilook.settings import log_format
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.servers import stop
from tests.servers import wait_for_port

ACCESS = 'asgilook.http.access'
IMAGE = f'/images/{FIRST_IDS[0]}.jpeg'
IMAGE_ROUTE = '/images/{image_id:uuid}.jpeg'
NEW_ID = re.compile(r'[0-9a-f]{32}')
TIME = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z')
DEPLOYED_LOGGING = os.path.join(
    os.path.dirname(__file__), '..', 'deploy', 'logging.json'
)


@pytest.fixture
def access_log(caplog):
    """The access log's records, as the test makes them."""
    caplog.set_level(logging.INFO, logger=ACCESS)

    def records():
        return [record for record in caplog.records if record.name == ACCESS]

    return records


class FalconCounter:
    """A middleware that counts the requests Falcon itself handles."""

    def __init__(self):
        self.requests = 0

    async def process_request(self, req, resp):
        self.requests += 1


# Request ids


def test_every_answer_has_a_request_id_of_its_own(client):
    first = client.simulate_get('/images').headers['X-Request-ID']
    second = client.simulate_get('/images').headers['X-Request-ID']
    assert NEW_ID.fullmatch(first) and NEW_ID.fullmatch(second)
    assert first != second


def test_a_new_id_is_a_uuid4():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for made in ids:
        parsed = uuid.UUID(made)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, made)


@pytest.mark.parametrize(
    'sent',
    ['abc-123', '0123456789abcdef' * 8, 'Root=1-67891233:a/b+c=d@e_f.g', 'x'],
)
def test_a_sane_request_id_is_kept_and_sent_back(client, sent):
    resp = client.simulate_get('/images', headers={'X-Request-ID': sent})
    assert resp.headers['X-Request-ID'] == sent


@pytest.mark.parametrize(
    'sent',
    ['', 'a b', 'a"b', 'a,b', '<script>', 'x' * 129, 'caf\xe9', 'a\tb'],
)
def test_another_request_id_is_replaced_by_a_new_one(client, sent):
    resp = client.simulate_get('/images', headers={'X-Request-ID': sent})
    assert NEW_ID.fullmatch(resp.headers['X-Request-ID'])


def test_refusals_and_replays_have_a_request_id_too(client, access_log):
    counter = FalconCounter()
    client.app.add_middleware(counter)
    assert client.simulate_post('/images', body=draw_image()).status_code == 201
    assert client.simulate_get(IMAGE).status_code == 200
    handled = counter.requests
    replay = client.simulate_get(IMAGE, headers={'X-Request-ID': 'replay-1'})
    too_long = client.simulate_get('/images', query_string='a=' + 'x' * MAX_TARGET)
    too_large = client.simulate_get('/images', headers={'X-Big': 'x' * MAX_HEADERS})

    # The replay came from the memory: Falcon never saw it.
    assert counter.requests == handled
    assert (replay.status_code, replay.headers['X-ASGILook-Cache']) == (200, 'Hit')
    assert replay.headers['X-Request-ID'] == 'replay-1'
    assert (too_long.status_code, too_large.status_code) == (414, 431)
    for resp in (too_long, too_large):
        assert NEW_ID.fullmatch(resp.headers['X-Request-ID'])
    *_, replayed, refused_target, refused_headers = access_log()
    assert (replayed.request_id, replayed.route, replayed.cache) == (
        'replay-1',
        IMAGE_ROUTE,
        'Hit',
    )
    assert replayed.bytes == len(replay.content)
    assert (refused_target.status, refused_target.route, refused_target.cache) == (
        414,
        '(no route)',
        None,
    )
    assert refused_target.request_id == too_long.headers['X-Request-ID']
    assert refused_headers.status == 431


@pytest.mark.parametrize('failing', ['http.response.start', 'http.response.body'])
def test_a_replay_cut_off_is_logged_with_what_was_handed_on(
    client, access_log, failing
):
    assert client.simulate_post('/images', body=draw_image()).status_code == 201
    body = client.simulate_get(IMAGE).content
    sent = []

    async def receive():
        return {'type': 'http.request', 'body': b''}

    async def send(message):
        sent.append(message['type'])
        if message['type'] == failing:
            raise OSError('the client went away')

    scope = {
        'type': 'http',
        'method': 'GET',
        'path': IMAGE,
        'query_string': b'',
        'headers': [(b'x-request-id', b'cut-1')],
    }
    with pytest.raises(OSError, match='went away'):
        asyncio.run(client.app(scope, receive, send))

    assert sent[-1] == failing
    *_, record = access_log()
    # As for an app's answer: the status once the start is handed on, the
    # body's bytes once the body is.
    assert (record.request_id, record.status, record.cache) == ('cut-1', 200, 'Hit')
    assert record.bytes == (len(body) if failing == 'http.response.body' else 0)


# The access log


def test_the_access_log_says_what_was_answered(client, access_log):
    created = client.simulate_post(
        '/images',
        body=draw_image(),
        headers={'X-Request-ID': 'upload-1'},
        remote_addr='192.0.2.7',
    )
    listing = client.simulate_get('/images', query_string='limit=1')
    missing = client.simulate_get('/nothing/here')

    upload, listed, not_found = access_log()
    expected = {
        'method': 'POST',
        'path': '/images',
        'route': '/images',
        'status': 201,
        'bytes': len(created.content),
        'cache': created.headers.get('X-ASGILook-Cache'),
        'client': '192.0.2.7',
        'request_id': 'upload-1',
    }
    assert {name: upload.__dict__[name] for name in expected} == expected
    assert upload.levelno == logging.INFO
    assert 0 < upload.duration < 30
    said = re.fullmatch(
        rf'POST /images 201 {len(created.content)} B (\d+\.\d) ms '
        rf'{upload.cache or "-"} 192\.0\.2\.7',
        upload.getMessage(),
    )
    assert said and abs(float(said.group(1)) - upload.duration * 1000) <= 0.1
    assert (listed.path, listed.route, listed.status, listed.cache) == (
        '/images?limit=1',
        '/images',
        200,
        'Miss',
    )
    assert listed.request_id == listing.headers['X-Request-ID']
    assert (not_found.route, not_found.status) == ('(no route)', 404)
    assert not_found.bytes == len(missing.content) > 0


def test_a_head_is_logged_with_no_bytes(client, access_log):
    resp = client.simulate_head('/images')
    assert (resp.status_code, resp.content) == (200, b'')
    (head,) = access_log()
    assert (head.method, head.status, head.bytes) == ('HEAD', 200, 0)


def test_without_a_configured_log_no_record_is_made(client, caplog):
    caplog.set_level(logging.WARNING)
    resp = client.simulate_get('/images')
    assert NEW_ID.fullmatch(resp.headers['X-Request-ID'])
    assert [record for record in caplog.records if record.name == ACCESS] == []


def call(app, scope=None):
    """Run ``app`` through an AccessLog; the messages it sent, and its error."""
    sent = []

    async def receive():
        return {'type': 'http.request', 'body': b''}

    async def send(message):
        sent.append(message)

    scope = scope or {
        'type': 'http',
        'method': 'GET',
        'path': '/',
        'query_string': b'',
        'headers': [],
    }
    try:
        asyncio.run(AccessLog()(scope, receive, send, app))
    except RuntimeError as ex:
        return sent, ex
    return sent, None


def test_an_app_that_failed_before_it_answered_is_logged_as_a_500(access_log):
    async def failing(scope, receive, send):
        assert scope[ANSWER].request_id == logs.CURRENT.get().request_id
        raise RuntimeError('broken')

    sent, error = call(failing)
    assert (sent, str(error)) == ([], 'broken')
    (record,) = access_log()
    assert (record.status, record.bytes, record.client) == (500, 0, None)
    assert record.getMessage().endswith(' - -')
    assert logs.CURRENT.get() is None


def test_an_app_that_failed_after_it_answered_is_logged_with_its_status(access_log):
    async def failing(scope, receive, send):
        await send({'type': 'http.response.start', 'status': 200, 'headers': []})
        await send({'type': 'http.response.body', 'body': b'part', 'more_body': True})
        raise RuntimeError('cut off')

    sent, error = call(failing)
    assert str(error) == 'cut off'
    assert sent[0]['headers'] == [(b'x-request-id', sent[0]['headers'][0][1])]
    (record,) = access_log()
    assert (record.status, record.bytes) == (200, 4)


def test_headers_sent_as_iterators_are_read_once(access_log):
    scope = {
        'type': 'http',
        'method': 'GET',
        'path': '/',
        'query_string': b'',
        'headers': iter([iter([b'x-request-id', b'given'])]),
        'client': ('192.0.2.1', 4000),
    }

    async def answer(scope, receive, send):
        assert scope['headers'] == [(b'x-request-id', b'given')]
        await send({'type': 'http.response.start', 'status': 204, 'headers': []})
        await send({'type': 'http.response.body'})

    sent, error = call(answer, scope)
    assert error is None
    assert sent[0]['headers'] == [(b'x-request-id', b'given')]
    (record,) = access_log()
    assert (record.request_id, record.client, record.status) == (
        'given',
        '192.0.2.1',
        204,
    )


def test_routes_told_outside_of_a_request_are_ignored():
    observed = []
    observe = AccessLog().observing(lambda *args: observed.append(args))
    observe('/images', 'GET', 200, 0.1, 'Hit')
    req = falcon.testing.create_asgi_req(path='/images')
    req.uri_template = '/images'
    asyncio.run(AccessLog().process_response(req, falcon.asgi.Response(), None, True))
    assert observed == [('/images', 'GET', 200, 0.1, 'Hit')]
    assert logs.CURRENT.get() is None


# The formats


def record(**fields):
    return logging.makeLogRecord(
        {'name': 'asgilook.test', 'levelno': 30, 'levelname': 'WARNING', **fields}
    )


def failure():
    try:
        raise ValueError('it broke')
    except ValueError:
        return sys.exc_info()


def test_json_is_one_object_a_line_with_the_fields_in_order():
    formatter = logs.JSONFormatter()
    made = record(msg='Redis %s', args=('away',), status=503, when=object)
    made.created, made.msecs = 86400.25, 250.0

    line = formatter.format(made)

    assert '\n' not in line
    document = json.loads(line)
    assert list(document) == ['time', 'level', 'logger', 'message', 'status', 'when']
    assert document == {
        'time': '1970-01-02T00:00:00.250Z',
        'level': 'WARNING',
        'logger': 'asgilook.test',
        'message': 'Redis away',
        'status': 503,
        'when': str(object),
    }


def test_json_has_the_exception_as_one_field():
    formatter = logs.JSONFormatter()
    document = json.loads(formatter.format(record(msg='failed', exc_info=failure())))
    assert document['exc'].startswith('Traceback (most recent call last):\n')
    assert document['exc'].endswith('ValueError: it broke')
    # A record from another process has the text of its exception only.
    sent = json.loads(formatter.format(record(msg='failed', exc_text='Traceback...')))
    assert sent['exc'] == 'Traceback...'
    stacked = json.loads(formatter.format(record(msg='here', stack_info='Stack...')))
    assert (stacked['stack'], 'exc' in stacked) == ('Stack...', False)


def test_plain_is_a_line_with_time_level_logger_and_request_id():
    formatter = logs.PlainFormatter()
    made = record(msg='GET / 200', request_id='abc')
    made.created, made.msecs = 0.5, 500.0
    later = record(msg='later')
    later.created, later.msecs = 0.75, 750.0
    next_day = record(msg='next day')
    next_day.created, next_day.msecs = 86400.0, 0.0

    assert formatter.format(made) == (
        '1970-01-01T00:00:00.500Z WARNING asgilook.test: GET / 200 request_id=abc'
    )
    assert formatter.format(later).startswith('1970-01-01T00:00:00.750Z WARNING ')
    assert formatter.format(next_day).startswith('1970-01-02T00:00:00.000Z WARNING ')


def test_plain_puts_a_traceback_on_lines_of_its_own():
    formatter = logs.PlainFormatter()
    lines = formatter.format(record(msg='failed', exc_info=failure())).splitlines()
    assert lines[0].endswith(' WARNING asgilook.test: failed')
    assert (lines[1], lines[-1]) == (
        'Traceback (most recent call last):',
        'ValueError: it broke',
    )
    sent = formatter.format(record(msg='failed', exc_text='Traceback...'))
    assert sent.splitlines()[1:] == ['Traceback...']
    stacked = formatter.format(record(msg='here', stack_info='Stack...'))
    assert stacked.splitlines()[1:] == ['Stack...']


class Request:
    def __init__(self, request_id, path):
        self.request_id = request_id
        self.path = path


def test_events_get_the_request_and_the_image_they_are_about():
    fields = logs.RequestFields()
    image = 'f2375273-8049-4b10-b17e-8851db9ac7af'
    other = '1a256a8a-2063-46ff-b53f-d04d5bcf5eee'

    outside = record(msg='object images/%s.jpeg is damaged', args=(image,))
    nothing = record(msg='Redis answers again')
    assert fields.filter(outside) and fields.filter(nothing)
    assert (outside.image_id, 'request_id' in outside.__dict__) == (image, False)
    assert 'image_id' not in nothing.__dict__

    token = logs.CURRENT.set(Request('req-1', f'/images/{image}.jpeg'))
    try:
        purge = record(msg='The purge failed')
        named = record(msg=f'Could not render {other}')
        given = record(msg='stored', image_id='given')
        access = record(msg='GET', request_id='its-own')
        for made in (purge, named, given, access):
            assert fields.filter(made)
        listing = record(msg='listing')
        logs.CURRENT.set(Request('req-2', '/images?limit=1'))
        assert fields.filter(listing)
    finally:
        logs.CURRENT.reset(token)
    assert (purge.request_id, purge.image_id) == ('req-1', image)
    assert (named.request_id, named.image_id) == ('req-1', other)
    assert (given.request_id, given.image_id) == ('req-1', 'given')
    assert (access.request_id, 'image_id' in access.__dict__) == ('its-own', False)
    assert (listing.request_id, 'image_id' in listing.__dict__) == ('req-2', False)


def test_log_formats_are_plain_or_json():
    assert [log_format(raw) for raw in ('', ' JSON ', 'plain')] == [
        'plain',
        'json',
        'plain',
    ]
    with pytest.raises(ValueError, match='^plain or json$'):
        log_format('xml')
    assert set(logs.FORMATTERS) == {'plain', 'json'}


def test_the_configuration_is_printed_for_a_format():
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook.logs', 'json'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == logs.config('json')
    wrong = subprocess.run(
        [sys.executable, '-m', 'asgilook.logs', 'xml'], capture_output=True, text=True
    )
    assert (wrong.returncode, wrong.stdout) == (2, '')
    assert wrong.stderr == 'usage: python -m asgilook.logs {plain,json}\n'
    assert logs.main(['plain']) == 0


# asgilook serve, and uvicorn, as real processes


def serve_environment(tmp_path, **more):
    env = dict(os.environ)
    env.pop('ASGI_LOOK_REDIS_URL', None)
    env['XDG_DATA_HOME'] = str(tmp_path / 'data')
    env.update(more)
    return env


def test_serve_refuses_a_log_format_it_does_not_know(tmp_path):
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'serve', '--storage', str(tmp_path)],
        env=serve_environment(tmp_path, ASGI_LOOK_LOG_FORMAT='xml'),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (1, '')
    assert (
        done.stderr
        == "asgilook: ASGI_LOOK_LOG_FORMAT must be plain or json, not 'xml'\n"
    )


def test_serve_says_why_it_cannot_start_as_json(tmp_path):
    (tmp_path / 'a-file').write_text('')
    storage = tmp_path / 'a-file' / 'storage'
    done = subprocess.run(
        [sys.executable, '-m', 'asgilook', 'serve', '--storage', str(storage)],
        env=serve_environment(tmp_path, ASGI_LOOK_LOG_FORMAT='json'),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (1, '')
    said = json.loads(done.stderr)
    assert TIME.fullmatch(said.pop('time'))
    assert said == {
        'level': 'ERROR',
        'logger': 'asgilook.commands.serve',
        'message': f'cannot keep the images in {storage}: Not a directory',
    }


class Served:
    """``asgilook serve`` on a free port, its stdout and stderr kept in files."""

    def __init__(self, tmp_path, *args, env):
        self.port = free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        self.out = tmp_path / 'stdout.log'
        self.err = tmp_path / 'stderr.log'
        with open(self.out, 'wb') as out, open(self.err, 'wb') as err:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'asgilook', 'serve', '--port', str(self.port),
                 '--storage', str(tmp_path / 'storage'), *args],
                env=env, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
        wait_for_port(self.port, self.process, timeout=60)

    def lines(self):
        return (self.out.read_text() + self.err.read_text()).splitlines()

    def wait_for(self, text, timeout=10.0):
        deadline = time.monotonic() + timeout
        while text not in self.err.read_text():
            assert time.monotonic() < deadline, f'never logged: {text}'
            time.sleep(0.05)


def objects(lines):
    """Every line as a JSON object with a time, a level, a logger and a message."""
    parsed = []
    for line in lines:
        document = json.loads(line)
        assert TIME.fullmatch(document['time']), line
        assert {'level', 'logger', 'message'} <= set(document), line
        parsed.append(document)
    return parsed


def exchange(url, purge_url):
    """The requests of the JSON log's test; their answers, by name."""
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post(
            '/images', content=draw_image(), headers={'X-Request-ID': 'upload-1'}
        )
        document = created.json()
        answers = {
            'created': created,
            'first': http.get(document['image']),
            'again': http.get(document['image']),
            'insane': http.get('/images?limit=1', headers={'X-Request-ID': 'a b'}),
            'missing': http.get('/nothing'),
            'deleted': http.delete(
                document['image'],
                headers={
                    'Authorization': f'Bearer {document["delete_token"]}',
                    'X-Request-ID': 'delete-1',
                },
            ),
        }
    return document, answers


@pytest.mark.e2e
def test_serve_logs_json_objects_of_requests_and_events(tmp_path, redis_server):
    purge_url = f'http://127.0.0.1:{free_port()}/purge'
    env = serve_environment(
        tmp_path,
        ASGI_LOOK_LOG_FORMAT='json',
        ASGI_LOOK_REDIS_URL=f'{redis_server.url}/11',
        ASGI_LOOK_PURGE_URL=purge_url,
        # NOTE: A busy machine is no Redis outage (whose warnings would count).
        ASGI_LOOK_REDIS_TIMEOUT='10',
    )
    served = Served(tmp_path, env=env)
    try:
        document, answers = exchange(served.url, purge_url)
        served.wait_for(f'The purge at {purge_url} failed')
    finally:
        assert stop(served.process) == 0

    logged = objects(served.lines())
    by_logger = {}
    for entry in logged:
        by_logger.setdefault(entry['logger'], []).append(entry)
    assert set(by_logger) == {
        'asgilook.commands.serve',
        'uvicorn.error',
        ACCESS,
        'asgilook.http.purge',
        'asgilook.storage.store',
    }
    assert by_logger['asgilook.commands.serve'][0]['message'].startswith(
        'serving the images in '
    )
    assert 'Application startup complete.' in {
        entry['message'] for entry in by_logger['uvicorn.error']
    }
    access = by_logger[ACCESS]
    assert len(access) == len(answers)
    for entry, (name, resp) in zip(access, answers.items(), strict=True):
        assert entry['request_id'] == resp.headers['X-Request-ID'], name
        assert (entry['status'], entry['bytes']) == (
            resp.status_code,
            resp.num_bytes_downloaded,
        ), name
        assert entry['cache'] == resp.headers.get('X-ASGILook-Cache'), name
        assert (entry['client'], entry['level']) == ('127.0.0.1', 'INFO')
        assert isinstance(entry['duration'], float) and entry['duration'] > 0
    created, first, again, insane, missing, deleted = access
    assert (created['method'], created['route'], created['request_id']) == (
        'POST',
        '/images',
        'upload-1',
    )
    assert (first['path'], first['route'], first['cache']) == (
        document['image'],
        IMAGE_ROUTE,
        'Miss',
    )
    assert (again['route'], again['cache']) == (IMAGE_ROUTE, 'Hit')
    assert (insane['path'], insane['route']) == ('/images?limit=1', '/images')
    assert NEW_ID.fullmatch(insane['request_id'])
    assert (missing['route'], missing['status']) == ('(no route)', 404)
    assert (deleted['method'], deleted['status'], deleted['request_id']) == (
        'DELETE',
        204,
        'delete-1',
    )
    (purge,) = by_logger['asgilook.http.purge']
    assert (purge['level'], purge['request_id'], purge['image_id']) == (
        'WARNING',
        'delete-1',
        document['id'],
    )


@pytest.mark.e2e
def test_serve_logs_plain_lines_with_time_latency_and_request_id(
    tmp_path, redis_server
):
    env = serve_environment(tmp_path, ASGI_LOOK_REDIS_URL=f'{redis_server.url}/12')
    served = Served(tmp_path, env=env)
    try:
        resp = httpx.get(f'{served.url}/images', headers={'X-Request-ID': 'plain-1'})
    finally:
        assert stop(served.process) == 0
    assert resp.headers['X-Request-ID'] == 'plain-1'
    lines = served.lines()
    assert lines[0].startswith('asgilook: serving the images in ')
    (access,) = [line for line in lines if f' {ACCESS}: ' in line]
    assert re.fullmatch(
        rf'{TIME.pattern} INFO {ACCESS}: GET /images 200 {len(resp.content)} B '
        r'\d+\.\d ms Miss 127\.0\.0\.1 request_id=plain-1',
        access,
    ), access
    assert any(
        re.fullmatch(
            rf'{TIME.pattern} INFO uvicorn.error: Application startup complete.', line
        )
        for line in lines
    ), lines
    assert not any('"GET /images HTTP/1.1" 200' in line for line in lines), lines


@pytest.mark.e2e
def test_plain_uvicorn_logs_json_with_the_deployed_configuration(
    tmp_path, redis_server
):
    log = tmp_path / 'uvicorn.log'
    with log.open('wb') as stderr:
        server = Uvicorn(
            tmp_path / 'storage',
            f'{redis_server.url}/13',
            '--log-config',
            DEPLOYED_LOGGING,
            stderr=stderr,
        )
        try:
            resp = httpx.get(f'{server.url}/healthz', headers={'X-Request-ID': 'h-1'})
        finally:
            assert server.stop() in (0, -signal.SIGTERM)
    logged = objects(log.read_text().splitlines())
    (access,) = [entry for entry in logged if entry['logger'] == ACCESS]
    assert (access['path'], access['status'], access['request_id']) == (
        '/healthz',
        resp.status_code,
        'h-1',
    )
    assert 'uvicorn.access' not in {entry['logger'] for entry in logged}

"""GET /openapi.json: the document of every route, kept true to the service."""

import copy
import importlib.metadata
import itertools
import re
import signal

import falcon
import falcon.inspect
import httpx
import hypothesis
import openapi_spec_validator
import pytest
import redis
import schemathesis
from schemathesis.generation import GenerationMode

from asgilook.http.app import create_app
from tests.helpers import draw_image
from tests.openapi_cases import send
from tests.servers import Uvicorn

METHODS = frozenset(method.lower() for method in falcon.constants.COMBINED_METHODS)
# NOTE: The Redis database of this module's server, apart from the other
#   end-to-end tests' (database 0) that share the session's redis-server.
REDIS_DB = 7


def documented(document):
    """Every (path, METHOD) of the document."""
    return {
        (path, method.upper())
        for path, item in document['paths'].items()
        for method in item
        if method in METHODS
    }


def routed(app):
    """Every (path, METHOD) that the app answers, with OpenAPI's path templates."""
    info = falcon.inspect.inspect_app(app)
    # NOTE: Static routes and sinks have no methods of their own to list.
    assert (info.static_routes, info.sinks) == ([], [])
    return {
        # Falcon's converters ({image_id:uuid}) are not OpenAPI's business.
        (re.sub(r'\{(\w+):[^}]*\}', r'{\1}', route.path), method.method)
        for route in info.routes
        for method in route.methods
        if not method.internal
    }


def refs(node):
    """Every $ref in a part of the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == '$ref':
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_served_and_valid(client):
    resp = client.simulate_get('/openapi.json')
    assert resp.status_code == 200
    assert resp.headers['content-type'] == falcon.MEDIA_JSON
    assert resp.headers['cache-control'] == 'no-cache'
    document = resp.json
    openapi_spec_validator.validate(document)
    assert document['openapi'].startswith('3.1.')
    assert document['info']['version'] == importlib.metadata.version('asgilook')
    assert document['servers'] == [{'url': '/'}]


def test_the_upload_names_every_accepted_format(client):
    document = client.simulate_get('/openapi.json').json
    description = document['paths']['/images']['post']['description']

    assert description.startswith('JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF, ')


def test_etag_and_head(client):
    first = client.simulate_get('/openapi.json')
    etag = first.headers['etag']
    head = client.simulate_head('/openapi.json')
    assert head.status_code == 200
    assert head.headers['etag'] == etag
    assert head.content == b''
    again = client.simulate_get('/openapi.json', headers={'If-None-Match': etag})
    assert again.status_code == 304
    assert again.content == b''


def test_every_route_and_method_is_documented(config):
    app = create_app(config)
    resp = falcon.testing.TestClient(app).simulate_get('/openapi.json')
    assert documented(resp.json) == routed(app)


def test_every_component_is_used_and_every_reference_resolves(client):
    document = client.simulate_get('/openapi.json').json
    components = document['components']
    used = set(refs(document))
    defined = {
        f'#/components/{kind}/{name}'
        for kind, members in components.items()
        if kind != 'securitySchemes'
        for name in members
    }
    assert used == defined
    schemes = {
        name for operation in _operations(document) for name in _security(operation)
    }
    assert schemes == set(components['securitySchemes'])


def _operations(document):
    for item in document['paths'].values():
        for method, operation in item.items():
            if method in METHODS:
                yield operation


def _security(operation):
    for requirement in operation.get('security', []):
        yield from requirement


def test_msgpack_is_described_beside_json(client):
    document = client.simulate_get('/openapi.json').json
    for operation in _operations(document):
        for response in operation['responses'].values():
            response = _resolve(document, response)
            content = response.get('content', {})
            if falcon.MEDIA_JSON in content and operation['operationId'] not in (
                'getOpenAPI',
                'headOpenAPI',
            ):
                assert content[falcon.MEDIA_MSGPACK] == content[falcon.MEDIA_JSON]
                assert 'Vary' in response['headers']


def _resolve(document, node):
    while '$ref' in node:
        target = document
        for part in node['$ref'].removeprefix('#/').split('/'):
            target = target[part]
        node = target
    return node


# End to end: schemathesis against a live server.


@pytest.fixture(scope='module')
def service(tmp_path_factory, redis_server):
    redis_url = f'{redis_server.url}/{REDIS_DB}'
    redis.Redis.from_url(redis_url).flushdb()
    server = Uvicorn(
        tmp_path_factory.mktemp('openapi-storage'),
        redis_url,
        # NOTE: Closed event streams are noticed at the next keep-alive.
        env={'ASGI_LOOK_EVENTS_KEEPALIVE': '1'},
    )
    yield server
    assert server.stop() in (0, -signal.SIGTERM)


@pytest.fixture(scope='module')
def uploads(service):
    """A few pictures, so that ids, versions and thumbnail sizes exist."""
    with httpx.Client(base_url=service.url, timeout=30) as http:
        return [
            http.post('/images', content=draw_image(size, format=kind)).json()
            for size, kind in (
                ((640, 360), 'PNG'),
                ((300, 200), 'JPEG'),
                ((32, 32), 'GIF'),
            )
        ]


@pytest.fixture(scope='module')
def assets(service):
    """The page's assets, each with the ``?v=`` the page names it by."""
    page = httpx.get(f'{service.url}/', timeout=30).text
    return dict(re.findall(r'"/static/([^"?]+)\?v=([^"]+)"', page))


def run_config(uploads, assets):
    """Few examples, no shrinking; known ids, versions, sizes and names often."""
    sizes = [
        uri.rsplit('/', 1)[1].removesuffix('.jpeg').split('x')
        for document in uploads
        for uri in document['thumbnails']
    ]
    return schemathesis.Config.from_dict(
        {
            'seed': 9,
            'request-timeout': 10,
            'generation': {
                'mode': 'all',
                'max-examples': 20,
                'no-shrink': True,
                'deterministic': True,
                'database': 'none',
            },
            'phases': {'stateful': {'enabled': False}},
            'dictionaries': {
                'ids': {'values': [document['id'] for document in uploads]},
                'versions': {'values': [document['version'] for document in uploads]},
                'widths': {'values': [int(width) for width, _ in sizes]},
                'heights': {'values': [int(height) for _, height in sizes]},
                'assets': {'values': sorted(assets)},
                'event ids': {'values': ['0-0']},
            },
            'parameters': {
                'path.image_id': {'dictionary': 'ids', 'probability': 0.6},
                'query.after': {'dictionary': 'ids', 'probability': 0.5},
                'query.v': {'dictionary': 'versions', 'probability': 0.3},
                'path.width': {'dictionary': 'widths', 'probability': 0.6},
                'path.height': {'dictionary': 'heights', 'probability': 0.6},
                'path.name': {'dictionary': 'assets', 'probability': 0.6},
                'header.Last-Event-ID': {'dictionary': 'event ids', 'probability': 0.5},
            },
            'operations': [
                {
                    # NOTE: The stream never ends: read its first event, or
                    #   what comes within half a second.
                    'include-path': '/events',
                    'request-timeout': 0.5,
                    'max-stream-events': 1,
                    'generation': {'max-examples': 3},
                },
            ],
        }
    )


def exercise(schema, base_url, steer=lambda case: None, only=None):
    """Send what schemathesis makes of each operation; the failures, in words.

    Per operation, as ``schema``'s config says: its coverage cases (every
    boundary, each enum value, each required part missing, other methods ...),
    then a few examples from Hypothesis, in each generation mode. ``steer``
    may change a case before it is sent; ``only`` names the operations to
    run (``'GET /images'``), if not all. Every case is sent, whatever failed
    before it.
    """
    failures = []

    def steer_and_send(case):
        steer(case)
        send(case, base_url, failures)

    for result in schema.get_all_operations():
        operation = result.ok()
        if only is not None and operation.label not in only:
            continue
        generation = schema.config.generation_for(operation=operation)
        for case in schema.iter_coverage_cases(
            operation,
            generation_modes=generation.modes,
            generation_config=schema.config.generation_for(
                operation=operation, phase='coverage'
            ),
        ):
            steer_and_send(case)
        for mode in generation.modes:

            @hypothesis.settings(
                max_examples=generation.max_examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                steer_and_send(case)

            try:
                fuzz()
            except hypothesis.errors.Unsatisfiable:
                # NOTE: Nothing of the operation can be made invalid (GET /
                #   has one string header alone, say): no negative cases.
                assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def load(service, uploads, assets, document=None):
    """The served document (or ``document``), with the run's config."""
    config = run_config(uploads, assets)
    if document is None:
        return schemathesis.openapi.from_url(
            f'{service.url}/openapi.json', config=config
        )
    return schemathesis.openapi.from_dict(document, config=config)


@pytest.mark.e2e
# NOTE: Some thousand requests, a minute and a half on an idle machine; more
#   under coverage on a busy one, which the default timeout is too short for.
@pytest.mark.timeout(300)
def test_the_service_answers_as_documented(service, uploads, assets):
    accept = itertools.cycle([None, falcon.MEDIA_MSGPACK, falcon.MEDIA_JSON])

    def steer(case):
        # NOTE: OpenAPI leaves Accept out of the parameters: every other
        #   request asks for MessagePack or JSON by name.
        value = next(accept)
        if value is not None:
            case.headers = {**(case.headers or {}), 'Accept': value}

    failures = exercise(load(service, uploads, assets), service.url, steer)
    assert not failures, '\n\n'.join(failures)


@pytest.mark.e2e
def test_hand_made_cases_answer_as_documented(service, uploads, assets):
    """What random cases rarely reach: a deletion, validators, ``?v=``, forms."""
    schema = load(service, uploads, assets)
    with httpx.Client(base_url=service.url, timeout=30) as http:
        doomed = http.post('/images', content=draw_image((200, 100))).json()
    first = uploads[0]
    image_id = {'image_id': first['id']}
    width, height = first['thumbnails'][0].rsplit('/', 1)[1][:-5].split('x')
    thumbnail = {**image_id, 'width': int(width), 'height': int(height)}
    bearer = {'Authorization': f'Bearer {doomed["delete_token"]}'}
    image = schema['/images/{image_id}.jpeg']
    listing = schema['/images']
    msgpack_please = {'Accept': falcon.MEDIA_MSGPACK}
    cases = [
        (401, image['DELETE'].Case(path_parameters={'image_id': doomed['id']})),
        (403, image['DELETE'].Case(path_parameters=image_id, headers=bearer)),
        (
            204,
            image['DELETE'].Case(
                path_parameters={'image_id': doomed['id']}, headers=bearer
            ),
        ),
        (
            404,
            image['DELETE'].Case(
                path_parameters={'image_id': doomed['id']}, headers=bearer
            ),
        ),
        (
            304,
            image['GET'].Case(
                path_parameters=image_id,
                headers={'If-None-Match': f'"{first["version"]}"'},
            ),
        ),
        (
            304,
            image['GET'].Case(
                path_parameters=image_id,
                headers={'If-Modified-Since': first['modified']},
            ),
        ),
        (
            200,
            image['HEAD'].Case(path_parameters=image_id, query={'v': first['version']}),
        ),
        (404, image['GET'].Case(path_parameters=image_id, query={'v': 'gone'})),
        (
            200,
            schema['/thumbnails/{image_id}/{width}x{height}.jpeg']['GET'].Case(
                path_parameters=thumbnail, query={'v': first['version']}
            ),
        ),
        (200, listing['GET'].Case(query={'limit': 1, 'order': 'newest'})),
        (
            200,
            listing['GET'].Case(
                query={'limit': 1, 'after': first['id']}, headers=msgpack_please
            ),
        ),
        (
            201,
            listing['POST'].Case(
                body={'image': draw_image((160, 120), format='JPEG'), 'title': 'x'},
                media_type=falcon.MEDIA_MULTIPART,
            ),
        ),
        (
            400,
            listing['POST'].Case(
                body={'title': 'no picture'}, media_type=falcon.MEDIA_MULTIPART
            ),
        ),
        (
            400,
            listing['POST'].Case(body=b'GIF89a, then nothing', media_type='image/gif'),
        ),
        (
            415,
            listing['POST'].Case(
                body=b'P6 3 3 255 not quite', media_type='application/octet-stream'
            ),
        ),
        (200, schema['/healthz']['GET'].Case(headers=msgpack_please)),
        (
            204,
            image['OPTIONS'].Case(
                path_parameters=image_id,
                headers={
                    'Origin': 'https://example.org',
                    'Access-Control-Request-Method': 'DELETE',
                    'Access-Control-Request-Headers': 'authorization',
                },
            ),
        ),
        (
            400,
            schema['/thumbnails/{image_id}/{width}x{height}.jpeg']['GET'].Case(
                path_parameters=thumbnail, query={'format': 'junk'}
            ),
        ),
        (
            414,
            listing['GET'].Case(query={'limit': 1, 'junk': 'x' * 5000}),
        ),
        (
            431,
            schema['/healthz']['GET'].Case(
                headers={**msgpack_please, 'X-Junk': 'x' * 40_000}
            ),
        ),
        *(
            (
                200,
                schema['/static/{name}']['GET'].Case(
                    path_parameters={'name': name}, query={'v': version}
                ),
            )
            for name, version in assets.items()
        ),
    ]
    failures = []
    for status, case in cases:
        response = send(case, service.url, failures)
        assert response.status_code == status, case.as_curl_command()
    assert not failures, '\n\n'.join(failures)


LISTING = ('GET /images',)


@pytest.mark.e2e
def test_a_wrong_document_fails_the_run(service, uploads, assets):
    """The run can fail: it finds a document that does not tell the truth."""
    with httpx.Client(base_url=service.url, timeout=30) as http:
        document = http.get('/openapi.json').json()

    # A field that the service sends is missing from the image document.
    wrong = copy.deepcopy(document)
    image = wrong['components']['schemas']['Image']
    del image['properties']['srcset']
    image['required'].remove('srcset')
    failures = exercise(
        load(service, uploads, assets, wrong), service.url, only=LISTING
    )
    assert failures
    assert all("'srcset' was unexpected" in failure for failure in failures), failures

    # The listing takes limits over 500, which this document says it refuses.
    wrong = copy.deepcopy(document)
    wrong['components']['parameters']['Limit']['schema']['maximum'] = 500
    failures = exercise(
        load(service, uploads, assets, wrong), service.url, only=LISTING
    )
    assert failures
    assert all('limit=501' in failure for failure in failures), failures

    # The service takes uploads, which this document leaves out (and its
    # OPTIONS lists them).
    wrong = copy.deepcopy(document)
    del wrong['paths']['/images']['post']
    failures = exercise(
        load(service, uploads, assets, wrong),
        service.url,
        only=(*LISTING, 'OPTIONS /images'),
    )
    assert any('Undocumented methods advertised: POST' in f for f in failures)
    assert any('Unsupported method POST returned' in f for f in failures)

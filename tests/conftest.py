"""The tests' fixtures; the plain helpers they use are in tests/helpers.py."""

import io
import uuid

import falcon.testing
import PIL.Image
import pytest

# NOTE: Before the import, so that decode()'s assert explains a failure.
pytest.register_assert_rewrite('tests.helpers')

from asgilook.config import Config  # noqa: E402
from asgilook.http.app import create_app  # noqa: E402
from tests.helpers import FIRST_IDS  # noqa: E402
from tests.helpers import draw_image  # noqa: E402
from tests.helpers import fake_redis_from_url  # noqa: E402


@pytest.fixture
def predictable_uuid():
    ids = iter(uuid.UUID(value) for value in FIRST_IDS)

    def next_uuid():
        return next(ids, None) or uuid.uuid4()

    return next_uuid


@pytest.fixture
def storage_path(tmpdir):
    # NOTE: A py.path LocalPath on purpose: the tutorial's tests assign one.
    #   The store persists, so each test gets a directory of its own; the
    #   tutorial's one shared directory is replayed in test_tutorial.py.
    return tmpdir


@pytest.fixture
def config(predictable_uuid, storage_path):
    config = Config()
    config.redis_from_url = fake_redis_from_url
    config.storage_path = storage_path
    config.uuid_generator = predictable_uuid
    return config


@pytest.fixture
def client(config):
    return falcon.testing.TestClient(create_app(config))


@pytest.fixture(scope='session')
def png_image():
    return draw_image()


@pytest.fixture(scope='session')
def image_size():
    def report_size(data):
        return PIL.Image.open(io.BytesIO(data)).size

    return report_size


@pytest.fixture(scope='session')
def redis_server():
    """A real redis-server process for the whole session."""
    from asgilook.commands.processes import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture(scope='session')
def postgres_server():
    """A real PostgreSQL server for the whole session (see tests/postgres.py).

    Each test makes a database of its own with ``postgres_server.database()``.
    """
    from tests.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope='session')
def seaweed_server():
    """A real SeaweedFS S3 server for the whole session (see tests/seaweed.py).

    A test that stops it starts it again; each test has a prefix of its own
    in ``seaweed_server.bucket`` (the ``bucket`` fixture).
    """
    from tests.seaweed import SeaweedServer

    with SeaweedServer() as server:
        yield server


@pytest.fixture
def bucket(seaweed_server):
    """``s3://BUCKET/PREFIX`` of a fresh prefix in the SeaweedFS bucket."""
    if seaweed_server.process is None:
        seaweed_server.start()
    return f'{seaweed_server.url}/test-{uuid.uuid4().hex[:12]}'

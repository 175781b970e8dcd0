import io
import random
import uuid

import fakeredis
import falcon.testing
import PIL.Image
import PIL.ImageDraw
import pytest

from asgilook.config import Config
from asgilook.http.app import create_app

FIRST_IDS = (
    '36562622-48e5-4a61-be67-e426b11821ed',
    '3bc731ac-8cd8-4f39-b6fe-1a195d3b4e74',
    'ba1c4951-73bc-45a4-a1f6-aa2b958dafa4',
)


def fake_redis_from_url(url):
    """A client on a fake server of its own: each app gets a fresh cache."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


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


def draw_image(size=(640, 360), mode='RGB', format='PNG', background='black'):
    """A picture of random yellow ellipses, encoded in ``format``."""
    image = PIL.Image.new('RGB', size, color=background)
    draw = PIL.ImageDraw.Draw(image)
    width, height = size
    for _ in range(16):
        x0, x1 = sorted(random.randint(0, width - 1) for _ in range(2))
        y0, y1 = sorted(random.randint(0, height - 1) for _ in range(2))
        draw.ellipse([(x0, y0), (x1, y1)], fill='yellow', outline='red')
    output = io.BytesIO()
    image.convert(mode).save(output, format)
    return output.getvalue()


@pytest.fixture(scope='session')
def png_image():
    return draw_image()


@pytest.fixture(scope='session')
def image_size():
    def report_size(data):
        return PIL.Image.open(io.BytesIO(data)).size

    return report_size


def decode(data):
    """Decode a response body; asserts it is a complete JPEG."""
    image = PIL.Image.open(io.BytesIO(data))
    assert image.format == 'JPEG'
    image.load()
    return image


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

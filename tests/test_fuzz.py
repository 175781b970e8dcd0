"""Property-based tests: mutated pictures get a 201 or a clear 4xx, never a 5xx."""

import os

import falcon.testing
import hypothesis
import hypothesis.strategies as st
import pytest

from asgilook.config import Config
from asgilook.errors import InvalidImage
from asgilook.http.app import create_app
from asgilook.pictures import pixels
from tests.helpers import decode
from tests.helpers import draw_image
from tests.helpers import fake_redis_from_url

FORMATS = ('JPEG', 'PNG', 'GIF', 'WEBP', 'BMP', 'TIFF')
SEEDS = {format: draw_image((48, 32), format=format) for format in FORMATS}

# NOTE: A mutation that enlarges the header's size is refused quickly with a
#   small pixel limit, rather than allocating a few hundred megabytes.
MAX_PIXELS = 1_000_000

# NOTE: Few examples per run keep `make test` fast; Hypothesis draws new ones
#   every run. deadline=None: decoding time varies with the machine's load.
FUZZ = hypothesis.settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)


@st.composite
def bit_flips(draw):
    """A seed picture with a few of its bits flipped, mostly in the header."""
    data = bytearray(SEEDS[draw(st.sampled_from(FORMATS))])
    anywhere = st.integers(0, len(data) - 1)
    header = st.integers(0, min(len(data), 96) - 1)
    for at in draw(st.lists(st.one_of(header, anywhere), min_size=1, max_size=6)):
        data[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def truncations(draw):
    """A seed picture cut short anywhere."""
    data = SEEDS[draw(st.sampled_from(FORMATS))]
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def insertions(draw):
    """A seed picture with a few random bytes inserted somewhere."""
    data = SEEDS[draw(st.sampled_from(FORMATS))]
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


MUTATIONS = [bit_flips(), truncations(), insertions()]


@pytest.fixture(scope='module')
def fuzz_client(tmp_path_factory):
    config = Config()
    config.redis_from_url = fake_redis_from_url
    config.storage_path = tmp_path_factory.mktemp('fuzz')
    config.max_pixels = MAX_PIXELS
    return falcon.testing.TestClient(create_app(config)), config.storage_path


@pytest.mark.parametrize('mutation', MUTATIONS, ids=['flip', 'truncate', 'insert'])
def test_a_mutated_upload_is_stored_or_refused_with_a_4xx(fuzz_client, mutation):
    client, storage = fuzz_client

    def files():
        return {
            os.path.relpath(os.path.join(root, name), storage)
            for root, _, names in os.walk(storage)
            for name in names
        }

    @FUZZ
    @hypothesis.given(mutation)
    def upload(data):
        before = files()

        resp = client.simulate_post('/images', body=data)

        after = files()
        assert not [name for name in after if name.endswith('.partial')]
        if resp.status_code == 201:
            stored = decode(client.simulate_get(resp.headers['Location']).content)
            assert list(stored.size) == resp.json['size']
        else:
            assert 400 <= resp.status_code < 500, resp.text
            assert resp.headers['Content-Type'] == 'application/json'
            assert resp.json['title'] and resp.json['description']
            # The journal's lock file is made by the first upload that gets
            # as far as the journal; nothing else may appear.
            assert after - {'journal.lock'} == before - {'journal.lock'}

    upload()


@pytest.mark.parametrize('mutation', MUTATIONS, ids=['flip', 'truncate', 'insert'])
def test_the_pipeline_answers_a_jpeg_or_a_domain_error(mutation):
    @hypothesis.settings(FUZZ, max_examples=200)
    @hypothesis.given(mutation)
    def run(data):
        try:
            ingested = pixels.ingest(data, MAX_PIXELS, 8)
        except InvalidImage as ex:
            assert str(ex)
        else:
            assert decode(ingested.original).size == ingested.size
            for size, thumbnail in ingested.thumbnails:
                assert decode(thumbnail).size == size

    run()

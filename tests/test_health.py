"""GET /healthz: what a load balancer and an operator need to know."""

import errno
import os

import msgpack

from asgilook.storage.blobs.local import LocalBlobs
from tests.test_faults import FlakyServer
from tests.test_faults import flaky_client


def test_a_healthy_process_says_ok(client):
    resp = client.simulate_get('/healthz')
    assert resp.status_code == 200
    report = resp.json
    assert report['status'] == 'ok'
    assert report['storage']['ok'] and 'GiB free' in report['storage']['detail']
    assert report['redis']['ok'] and 'answers in' in report['redis']['detail']
    assert resp.headers['Cache-Control'] == 'no-store'
    assert client.simulate_head('/healthz').status_code == 200
    packed = client.simulate_get('/healthz', headers={'Accept': 'application/msgpack'})
    assert msgpack.unpackb(packed.content)['status'] == 'ok'


def test_without_redis_it_is_degraded_but_still_serving(config):
    import falcon.testing

    from asgilook.http.app import create_app

    flaky = FlakyServer()
    flaky.connected = False
    config.redis_from_url = lambda url: flaky_client(flaky)
    config.redis_timeout = 0.05
    client = falcon.testing.TestClient(create_app(config))
    for _ in range(2):  # The first finds Redis away; the second the breaker open.
        resp = client.simulate_get('/healthz')
        assert resp.status_code == 200
        assert resp.json['status'] == 'degraded'
        assert resp.json['storage']['ok']
        assert not resp.json['redis']['ok']
        assert 'serving uncached' in resp.json['redis']['detail']


def test_storage_that_cannot_be_written_is_a_503(client, monkeypatch):
    def read_only(self):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(LocalBlobs, '_probe', read_only)
    resp = client.simulate_get('/healthz')
    assert resp.status_code == 503
    assert resp.json['status'] == 'degraded'
    assert not resp.json['storage']['ok']
    assert 'Read-only file system' in resp.json['storage']['detail']

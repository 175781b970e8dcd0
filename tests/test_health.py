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


# The free space of the storage volume (asgilook/storage/space.py), faked: the
# real full disk is in tests/test_full_disk.py.


def statvfs_of(monkeypatch, free, total=10 * 2**30):
    """Make every storage volume have ``free`` of ``total`` bytes."""
    from asgilook.storage import space

    block = 4096

    def fake(path):
        return os.statvfs_result(
            (block, block, total // block, free // block, free // block)
            + (1000, 1000, 1000, 0, 255)
        )

    monkeypatch.setattr(space, '_statvfs', fake)


def test_the_report_says_how_much_is_free_and_what_an_upload_needs(
    client, config, monkeypatch
):
    from asgilook.storage import space

    statvfs_of(monkeypatch, free=5 * 2**30)
    report = client.simulate_get('/healthz').json
    needed = int(config.max_upload_bytes * space.FACTOR)
    assert report['status'] == 'ok'
    assert report['space'] == {
        'ok': True,
        'detail': (
            f'5.37 GB free of 10.7 GB in {config.storage_path}; an upload may '
            f'need {needed / 1e6:.3g} MB'
        ),
        'free_bytes': 5 * 2**30,
        'total_bytes': 10 * 2**30,
        'needed_bytes': needed,
    }


def test_too_little_room_for_the_largest_upload_is_degraded(
    client, config, monkeypatch
):
    config.max_upload_bytes = 8 * 2**20
    statvfs_of(monkeypatch, free=12 * 2**20)
    resp = client.simulate_get('/healthz')
    assert resp.status_code == 200
    report = resp.json
    assert report['status'] == 'degraded'
    assert report['storage']['ok'] and report['redis']['ok']
    assert not report['space']['ok']
    assert report['space']['free_bytes'] == 12 * 2**20
    assert report['space']['needed_bytes'] == 20 * 2**20
    assert report['space']['detail'] == (
        f'12.6 MB free of 10.7 GB in {config.storage_path}: an upload of the '
        'largest size allowed may need 21 MB; uploads may fail with 507'
    )


def test_a_volume_below_the_floor_is_full_a_503(client, config, monkeypatch):
    statvfs_of(monkeypatch, free=392 * 1024)
    resp = client.simulate_get('/healthz')
    assert resp.status_code == 503
    report = resp.json
    assert report['status'] == 'degraded'
    assert not report['storage']['ok'] and not report['space']['ok']
    assert report['storage']['detail'] == report['space']['detail']
    assert report['space']['detail'] == (
        f'401 kB free of 10.7 GB in {config.storage_path}: full, below the '
        'floor of 1.05 MB, too little for a photo; uploads fail with 507'
    )


def test_a_volume_that_cannot_be_asked_has_no_figures(client, monkeypatch):
    from asgilook.storage import space

    def broken(path):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(space, '_statvfs', broken)
    resp = client.simulate_get('/healthz')
    assert resp.status_code == 200
    report = resp.json['space']
    assert report['ok'] and report['free_bytes'] is None
    assert report['detail'].endswith('cannot be measured (Input/output error)')


def test_the_renditions_volume_counts_when_it_is_apart(config, tmp_path, monkeypatch):
    import falcon.testing

    from asgilook.http.app import create_app
    from asgilook.storage import space

    renditions = tmp_path / 'renditions'
    config.renditions_url = str(renditions)
    real = space._statvfs

    def smaller_renditions(path):
        status = real(path)
        if path != renditions:
            return status
        return os.statvfs_result((4096, 4096, 100, 10, 10, *status[5:]))

    monkeypatch.setattr(space, '_statvfs', smaller_renditions)
    report = falcon.testing.TestClient(create_app(config)).simulate_get('/healthz')
    assert report.status_code == 503
    assert report.json['space']['free_bytes'] == 40960
    assert report.json['space']['total_bytes'] == 409600
    assert str(renditions) in report.json['space']['detail']


def test_a_bucket_has_no_free_space_to_ask(config, monkeypatch):
    import falcon.testing

    from asgilook.http.app import create_app
    from asgilook.storage.blobs.s3 import S3Blobs

    async def probe(self):
        return 'writable'

    monkeypatch.setattr(S3Blobs, 'probe', probe)
    config.storage_url = 's3://pictures/here'
    resp = falcon.testing.TestClient(create_app(config)).simulate_get('/healthz')
    assert resp.status_code == 200
    assert resp.json['status'] == 'ok'
    assert resp.json['space'] == {
        'ok': True,
        'detail': 'in a bucket: it has no free space to ask for',
        'free_bytes': None,
        'total_bytes': None,
        'needed_bytes': int(config.max_upload_bytes * 2.5),
    }

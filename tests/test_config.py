import base64
import os
import pathlib
import uuid

import falcon.asgi
import falcon.testing
import pytest
import redis.asyncio

from asgilook.config import Config
from asgilook.http.app import create_app
from asgilook.settings import SETTINGS


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv('ASGI_LOOK_REDIS_URL', raising=False)
    for name in (
        'ASGI_LOOK_IMAGE_WORKERS',
        'ASGI_LOOK_MAX_UPLOAD_BYTES',
        'ASGI_LOOK_MAX_PIXELS',
        'ASGI_LOOK_REDIS_TIMEOUT',
        'ASGI_LOOK_ADMIN_TOKEN',
        'ASGI_LOOK_UPLOAD_TIMEOUT',
        'ASGI_LOOK_UPLOAD_MIN_RATE',
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Config, 'DEFAULT_CONFIG_PATH', str(tmp_path / 'default'))
    monkeypatch.delenv('ASGI_LOOK_STORAGE_PATH', raising=False)

    config = Config()
    assert config.storage_path == tmp_path / 'default'
    assert config.storage_path.is_dir()
    assert config.min_thumb_size == 64
    assert config.redis_host == 'redis://localhost'
    assert config.redis_from_url is redis.asyncio.from_url
    assert config.uuid_generator is uuid.uuid4
    assert config.image_workers == 2
    assert config.max_upload_bytes == 32 * 1024 * 1024
    assert config.max_pixels == 50_000_000
    assert config.redis_timeout == 0.5
    assert config.upload_timeout == 120.0
    assert config.upload_min_rate == 4096
    assert config.admin_token is None


def test_class_defaults_are_the_tutorials():
    assert Config.DEFAULT_CONFIG_PATH == '/tmp/asgilook'
    assert Config.DEFAULT_MIN_THUMB_SIZE == 64
    assert Config.DEFAULT_REDIS_HOST == 'redis://localhost'
    assert Config.DEFAULT_REDIS_FROM_URL is redis.asyncio.from_url
    assert Config.DEFAULT_UUID_GENERATOR is uuid.uuid4


def test_environment(monkeypatch, tmp_path):
    storage = tmp_path / 'nested' / 'images'
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(storage))
    monkeypatch.setenv('ASGI_LOOK_REDIS_URL', 'redis://cache.internal:6380/2')
    monkeypatch.setenv('ASGI_LOOK_IMAGE_WORKERS', '5')
    monkeypatch.setenv('ASGI_LOOK_MAX_UPLOAD_BYTES', '1048576')
    monkeypatch.setenv('ASGI_LOOK_MAX_PIXELS', '1000000')
    monkeypatch.setenv('ASGI_LOOK_REDIS_TIMEOUT', '0.05')
    monkeypatch.setenv('ASGI_LOOK_ADMIN_TOKEN', 's3cret')
    monkeypatch.setenv('ASGI_LOOK_UPLOAD_TIMEOUT', '2.5')
    monkeypatch.setenv('ASGI_LOOK_UPLOAD_MIN_RATE', '1000')

    config = Config()
    assert isinstance(config.storage_path, pathlib.Path)
    assert config.storage_path == storage
    assert storage.is_dir()
    assert config.redis_host == 'redis://cache.internal:6380/2'
    assert config.image_workers == 5
    assert config.max_upload_bytes == 1048576
    assert config.max_pixels == 1_000_000
    assert config.redis_timeout == 0.05
    assert config.admin_token == 's3cret'
    assert config.upload_timeout == 2.5
    assert config.upload_min_rate == 1000


@pytest.mark.parametrize('value', ['0', '-3', 'many', ''])
def test_a_bad_number_in_the_environment_is_refused(monkeypatch, value):
    monkeypatch.setenv('ASGI_LOOK_MAX_PIXELS', value)
    with pytest.raises(ValueError, match='ASGI_LOOK_MAX_PIXELS must be a positive'):
        Config()


def test_create_app_without_a_config_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'from-env'))
    assert isinstance(create_app(), falcon.asgi.App)
    assert (tmp_path / 'from-env').is_dir()


def test_storage_path_may_be_a_plain_string(config, tmp_path, png_image):
    config.storage_path = str(tmp_path)
    client = falcon.testing.TestClient(create_app(config))
    location = client.simulate_post('/images', body=png_image).headers['Location']
    assert client.simulate_get(location).status_code == 200
    assert list((tmp_path / 'images').glob('*.jpeg'))


def test_from_environ_reads_the_mapping_it_is_given_and_nothing_else(
    monkeypatch, tmp_path
):
    monkeypatch.setenv('ASGI_LOOK_MAX_PIXELS', 'many')
    monkeypatch.setenv('ASGI_LOOK_STORAGE_PATH', str(tmp_path / 'not-this'))
    environ = {
        'ASGI_LOOK_STORAGE_PATH': str(tmp_path / 'this'),
        'ASGI_LOOK_MAX_PIXELS': '1000',
        'ASGI_LOOK_DATABASE_URL': '',
        'ASGI_LOOK_ADMIN_TOKEN': 'token',
    }
    before = dict(os.environ)

    config = Config.from_environ(environ)

    assert dict(os.environ) == before
    assert config.storage_path == tmp_path / 'this'
    assert config.storage_path.is_dir()
    assert not (tmp_path / 'not-this').exists()
    assert config.max_pixels == 1000
    assert config.database_url is None
    assert config.admin_token == 'token'
    assert config.redis_host == Config.DEFAULT_REDIS_HOST
    assert config.min_thumb_size == 64
    assert config.uuid_generator is uuid.uuid4


@pytest.mark.parametrize(
    ('name', 'raw'),
    [
        ('ASGI_LOOK_REDIS_TIMEOUT', 'nan'),
        ('ASGI_LOOK_REDIS_TIMEOUT', '-1'),
        ('ASGI_LOOK_EVENTS_KEEPALIVE', 'soon'),
        ('ASGI_LOOK_IMAGE_WORKERS', '1.5'),
        ('ASGI_LOOK_IMAGE_WORKERS', '0'),
    ],
)
def test_from_environ_refuses_what_a_setting_cannot_be(tmp_path, name, raw):
    environ = {'ASGI_LOOK_STORAGE_PATH': str(tmp_path), name: raw}
    with pytest.raises(ValueError) as caught:
        Config.from_environ(environ)
    assert str(caught.value) == f'{name} must be a positive number, not {raw!r}'


def test_every_declared_setting_names_a_config_attribute_and_its_default(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(Config, 'DEFAULT_CONFIG_PATH', str(tmp_path / 'default'))
    config = Config.from_environ({})
    for setting in SETTINGS:
        assert setting.variable.startswith('ASGI_LOOK_')
        assert setting.help and setting.kind
        if setting.attribute is None:
            assert setting.default is None and setting.shown
            continue
        default = getattr(Config, setting.default)
        if setting.kind == 'path':
            default = pathlib.Path(default)
        assert getattr(config, setting.attribute) == default


KEY = base64.b64encode(bytes(range(32))).decode()
OLD = base64.b64encode(bytes(32)).decode()


def test_storage_and_encryption_settings(tmp_path):
    config = Config.from_environ(
        {
            'ASGI_LOOK_STORAGE_PATH': str(tmp_path),
            'ASGI_LOOK_STORAGE_URL': 's3://pictures/site',
            'ASGI_LOOK_RENDITIONS_URL': str(tmp_path / 'fast'),
            'ASGI_LOOK_ENCRYPTION_KEY': f' {KEY}\n',
            'ASGI_LOOK_ENCRYPTION_OLD_KEYS': f'{OLD}, {KEY},',
            'AWS_ENDPOINT_URL': 'http://127.0.0.1:8333',
            'AWS_SECRET_ACCESS_KEY': 'secret',
            'HOME': '/root',
        }
    )
    assert config.storage_url == 's3://pictures/site'
    assert config.renditions_url == str(tmp_path / 'fast')
    assert config.encryption_key == KEY
    assert config.encryption_old_keys == (OLD, KEY)
    assert config.aws == {
        'AWS_ENDPOINT_URL': 'http://127.0.0.1:8333',
        'AWS_SECRET_ACCESS_KEY': 'secret',
    }


def test_storage_and_encryption_are_off_by_default(tmp_path):
    config = Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(tmp_path)})
    assert config.storage_url is None and config.renditions_url is None
    assert config.encryption_key is None and config.encryption_old_keys == ()
    assert config.aws == {}


@pytest.mark.parametrize(
    ('name', 'raw'),
    [
        ('ASGI_LOOK_ENCRYPTION_KEY', 'c2hvcnQ='),
        ('ASGI_LOOK_ENCRYPTION_KEY', 'not base64!'),
        ('ASGI_LOOK_ENCRYPTION_OLD_KEYS', f'{KEY},c2hvcnQ='),
    ],
)
def test_a_key_must_be_32_bytes_of_base64(tmp_path, name, raw):
    with pytest.raises(ValueError) as caught:
        Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(tmp_path), name: raw})
    assert str(caught.value) == (
        f'{name} must be the base64 of 32 random bytes '
        f'(`openssl rand -base64 32`), not {raw!r}'
    )


def test_sharing_settings(tmp_path):
    config = Config.from_environ(
        {
            'ASGI_LOOK_STORAGE_PATH': str(tmp_path),
            'ASGI_LOOK_UPLOADS': ' Keys ',
            'ASGI_LOOK_SIGNED_URL_TTL': '600',
            'ASGI_LOOK_URL_SECRETS': (
                ' a-second-secret-now-signs, the-first-secret-of-many,'
            ),
        }
    )
    assert config.uploads == 'keys'
    assert config.signed_url_ttl == 600
    assert config.url_secrets == (
        'a-second-secret-now-signs',
        'the-first-secret-of-many',
    )
    default = Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(tmp_path)})
    assert default.uploads == 'open' and default.url_secrets == ()


@pytest.mark.parametrize(
    ('name', 'raw', 'words'),
    [
        ('ASGI_LOOK_UPLOADS', 'maybe', 'open or keys'),
        ('ASGI_LOOK_URL_SECRETS', 'long-enough-secret-here,short', '16 characters'),
    ],
)
def test_a_sharing_setting_that_cannot_be_is_refused(tmp_path, name, raw, words):
    with pytest.raises(ValueError) as caught:
        Config.from_environ({'ASGI_LOOK_STORAGE_PATH': str(tmp_path), name: raw})
    assert name in str(caught.value)
    assert words in str(caught.value)
    assert repr(raw) in str(caught.value)

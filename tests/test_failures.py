"""Unexpected failures in the log: one line each, the traceback only at DEBUG.

A render that fails (asgilook/storage/renderer.py) and an answer that became
a 500 (asgilook/http/app.py) are logged by asgilook.logs.failure: one ERROR
record naming what failed and the exception, in the plain format one line,
in the JSON format with the exception as one field.
"""

import asyncio
import json
import logging

import falcon.testing
import pytest

from asgilook import logs
from asgilook.http.app import create_app
from asgilook.pictures import renditions
from asgilook.storage.store import Store
from tests.helpers import FIRST_IDS
from tests.helpers import draw_image

RENDERER = 'asgilook.storage.renderer'
APP = 'asgilook.http.app'
THUMBNAIL = f'/thumbnails/{FIRST_IDS[0]}/320x180.jpeg'


def formatted(record):
    """The record in both formats, as the service's log handler writes it."""
    logs.RequestFields().filter(record)
    return logs.PlainFormatter().format(record), json.loads(
        logs.JSONFormatter().format(record)
    )


@pytest.mark.parametrize(
    ('ex', 'text'),
    [
        (OSError(28, 'No space left on device'), 'OSError: [Errno 28] No space left'),
        (ValueError('two\nlines\r'), 'ValueError: two\\nlines\\r'),
        (KeyError(), 'KeyError'),
    ],
)
def test_an_exception_is_said_on_one_line(ex, text):
    assert logs.one_line(ex).startswith(text)
    assert '\n' not in logs.one_line(ex)


def test_a_failure_is_one_error_record_and_its_traceback_at_debug(caplog):
    logger = logging.getLogger('asgilook.test.failures')
    try:
        raise RuntimeError('it broke')
    except RuntimeError as ex:
        caught = ex
    with caplog.at_level(logging.INFO, logger=logger.name):
        logs.failure(logger, 'Could not do %s', 'it', ex=caught, image_id='abc')
    (error,) = caplog.records
    assert (error.levelname, error.getMessage()) == (
        'ERROR',
        'Could not do it: RuntimeError: it broke',
    )
    assert (error.exc, error.image_id, error.exc_info) == (
        'RuntimeError: it broke',
        'abc',
        None,
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logs.failure(logger, 'Could not do %s', 'it', ex=caught)
    error, traceback = caplog.records
    assert traceback.levelname == 'DEBUG'
    assert traceback.getMessage() == 'The traceback of: Could not do it'
    assert traceback.exc_info[1] is caught
    lines = logs.PlainFormatter().format(traceback).splitlines()
    assert lines[1] == 'Traceback (most recent call last):'


def test_a_failed_render_is_one_line_naming_the_image_and_the_error(
    config, monkeypatch, caplog
):
    def broken(*args):
        raise OSError('out of memory in the encoder')

    monkeypatch.setattr(renditions, 'render', broken)

    async def main():
        async with falcon.testing.ASGIConductor(create_app(config)) as conductor:
            assert (await conductor.simulate_post('/images', body=draw_image())).json
            resp = await conductor.simulate_get(THUMBNAIL, params={'format': 'avif'})
            assert resp.headers['Content-Type'] == 'image/jpeg'
            for _ in range(200):
                if caplog.records:
                    return
                await asyncio.sleep(0.01)

    with caplog.at_level(logging.INFO, logger=RENDERER):
        asyncio.run(main())
    (record,) = [record for record in caplog.records if record.name == RENDERER]
    plain, document = formatted(record)
    message = (
        f'Could not render the avif thumbnails of image {FIRST_IDS[0]}: '
        'OSError: out of memory in the encoder'
    )
    assert '\n' not in plain
    assert plain.endswith(f' ERROR {RENDERER}: {message}')
    assert document['message'] == message
    assert document['exc'] == 'OSError: out of memory in the encoder'
    assert document['image_id'] == FIRST_IDS[0]


def test_an_unexpected_error_is_a_500_and_one_line(client, monkeypatch, caplog):
    async def broken(self, *args, **kwargs):
        raise RuntimeError('the index\nfell over')

    monkeypatch.setattr(Store, 'page', broken)
    with caplog.at_level(logging.INFO):
        resp = client.simulate_get('/images')
    assert resp.status_code == 500
    assert resp.json == {'title': '500 Internal Server Error'}
    # Falcon's own handler, which logs the traceback, was not the one.
    assert [
        record.name for record in caplog.records if record.levelname == 'ERROR'
    ] == [APP]
    (record,) = [record for record in caplog.records if record.name == APP]
    plain, document = formatted(record)
    assert '\n' not in plain
    assert plain.endswith(
        f' ERROR {APP}: Could not answer GET /images: '
        'RuntimeError: the index\\nfell over'
    )
    assert document['exc'] == 'RuntimeError: the index\\nfell over'

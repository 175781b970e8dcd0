"""The baseline of ``bench/serving.py``: Falcon's tutorial app on a given Redis.

Served as ``uvicorn --factory tutorial:make``. ``bench/serving.py`` puts
``bench/`` and a copy of the tutorial's ``asgilook`` package, renamed
``asgilook_tutorial`` but otherwise unchanged, on ``PYTHONPATH``.

The tutorial's ``Config`` reads its storage path from
``ASGI_LOOK_STORAGE_PATH`` but has no setting for Redis (always
``redis://localhost``), so this factory sets the URL from ``BENCH_REDIS_URL``
the way the tutorial's own tests replace config attributes.
"""

import os

from asgilook_tutorial.app import create_app
from asgilook_tutorial.config import Config

REDIS_ENV = 'BENCH_REDIS_URL'


def make():
    """Build the tutorial app, caching in the Redis at ``BENCH_REDIS_URL``."""
    config = Config()
    config.redis_host = os.environ[REDIS_ENV]
    return create_app(config)

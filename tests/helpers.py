"""Plain helpers for the tests: pictures, their decoding, predictable ids.

Imported by the test modules (``from tests.helpers import draw_image``) and by
``tests/conftest.py``, which keeps the fixtures only.
"""

import io
import pathlib
import random

import fakeredis
import PIL.Image
import PIL.ImageDraw

#: The ids the ``predictable_uuid`` fixture hands out first, in order.
FIRST_IDS = (
    '36562622-48e5-4a61-be67-e426b11821ed',
    '3bc731ac-8cd8-4f39-b6fe-1a195d3b4e74',
    'ba1c4951-73bc-45a4-a1f6-aa2b958dafa4',
)


def fake_redis_from_url(url):
    """A client on a fake server of its own: each app gets a fresh cache."""
    return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())


def draw_image(
    size=(640, 360), mode='RGB', format='PNG', background='black', rng=random
):
    """A picture of random yellow ellipses, encoded in ``format``.

    ``rng``: where the ellipses come from (a seeded ``random.Random`` draws
    the same picture every time).
    """
    image = PIL.Image.new('RGB', size, color=background)
    draw = PIL.ImageDraw.Draw(image)
    width, height = size
    for _ in range(16):
        x0, x1 = sorted(rng.randint(0, width - 1) for _ in range(2))
        y0, y1 = sorted(rng.randint(0, height - 1) for _ in range(2))
        draw.ellipse([(x0, y0), (x1, y1)], fill='yellow', outline='red')
    output = io.BytesIO()
    image.convert(mode).save(output, format)
    return output.getvalue()


def decode(data):
    """Decode a response body; asserts it is a complete JPEG."""
    image = PIL.Image.open(io.BytesIO(data))
    assert image.format == 'JPEG'
    image.load()
    return image


def stored_objects(directory):
    """The objects of a local storage directory, by key: their stored bytes."""
    root = pathlib.Path(directory)
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for folder in ('images', 'thumbnails')
        for path in sorted((root / folder).rglob('*'))
        if path.is_file()
    }

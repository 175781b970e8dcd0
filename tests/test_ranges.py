"""Byte ranges as headers say them: parsing, resolving, If-Range."""

import datetime

import pytest

from asgilook.caching import ranges
from asgilook.caching.ranges import ByteRange

MODIFIED = datetime.datetime(2026, 12, 6, 21, 44, 24, 123456, datetime.UTC)


@pytest.mark.parametrize(
    ('header', 'expected'),
    [
        ('bytes=0-99', ByteRange(first=0, last=99)),
        ('bytes=100-', ByteRange(first=100)),
        ('bytes=-500', ByteRange(suffix=500)),
        ('Bytes = 5-5', ByteRange(first=5, last=5)),
        ('bytes=-0', ByteRange(suffix=0)),
    ],
)
def test_one_range_is_parsed(header, expected):
    assert ranges.parse(header) == expected


@pytest.mark.parametrize(
    'header',
    [
        None,
        '',
        'bytes=',
        'bytes=-',
        'bytes=5',
        'bytes=9-3',
        'bytes=0-1,5-6',
        'items=0-1',
        'bytes=a-b',
        'bytes=0x1-2',
        'bytes=\u0661-2',
        'bytes=1-' + '9' * 30,
    ],
)
def test_what_is_not_one_byte_range_is_answered_whole(header):
    assert ranges.parse(header) is None


@pytest.mark.parametrize(
    ('byte_range', 'size', 'expected'),
    [
        (ByteRange(first=0, last=99), 1000, (0, 100)),
        (ByteRange(first=990, last=2000), 1000, (990, 1000)),
        (ByteRange(first=999), 1000, (999, 1000)),
        (ByteRange(suffix=10), 1000, (990, 1000)),
        (ByteRange(suffix=5000), 1000, (0, 1000)),
        (ByteRange(first=1000), 1000, None),
        (ByteRange(first=1000, last=1001), 1000, None),
        (ByteRange(suffix=0), 1000, None),
        (ByteRange(suffix=3), 0, None),
        (ByteRange(first=0), 0, None),
    ],
)
def test_a_range_resolves_against_the_size(byte_range, size, expected):
    assert byte_range.resolve(size) == expected


def test_content_range_headers():
    assert ranges.content_range(0, 100, 1000) == 'bytes 0-99/1000'
    assert ranges.unsatisfiable(1000) == 'bytes */1000'


@pytest.mark.parametrize(
    ('if_range', 'holds'),
    [
        (None, True),
        ('"v1"', True),
        (' "v1" ', True),
        ('"v2"', False),
        ('W/"v1"', False),
        ('Sun, 06 Dec 2026 21:44:24 GMT', True),
        ('Sun, 06 Dec 2026 21:44:23 GMT', False),
        ('Sun, 06 Dec 2026 21:44:24', True),
        ('yesterday', False),
    ],
)
def test_if_range_names_this_version_or_not(if_range, holds):
    assert ranges.if_range_holds(if_range, '"v1"', MODIFIED) is holds


def test_a_weak_entity_tag_never_holds():
    assert not ranges.if_range_holds('W/"v1"', 'W/"v1"', MODIFIED)


def test_a_date_does_not_hold_without_a_last_modified():
    assert not ranges.if_range_holds('Sun, 06 Dec 2026 21:44:24 GMT', '"v1"', None)

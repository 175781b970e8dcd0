"""Sizes as people write them (quotas): read by byte_size, shown by format_bytes."""

import pytest

from asgilook.settings import byte_size
from asgilook.settings import format_bytes


@pytest.mark.parametrize(
    ('raw', 'size'),
    [
        ('1000', 1000),
        ('0', 0),
        ('0MB', 0),
        ('512 B', 512),
        ('512b', 512),
        ('512k', 512_000),
        ('200 kB', 200_000),
        ('200KB', 200_000),
        ('3MB', 3_000_000),
        ('3 MB', 3_000_000),
        ('3mb', 3_000_000),
        ('3m', 3_000_000),
        ('1.5GB', 1_500_000_000),
        ('2TB', 2 * 10**12),
        ('1KiB', 1024),
        ('10GiB', 10 * 1024**3),
        ('10 gib', 10 * 1024**3),
        ('1.5 MiB', 1024 * 1024 * 3 // 2),
        ('0.5TiB', 1024**4 // 2),
        ('  7 ', 7),
        # A fraction of a byte is dropped.
        ('1.5', 1),
        ('1.0009k', 1000),
        ('8000000000000000000', 8 * 10**18),
        ('3PB', 3 * 10**15),
        ('7.5 EB', 75 * 10**17),
        ('1 PiB', 1024**5),
    ],
)
def test_sizes_read_as_people_write_them(raw, size):
    assert byte_size(raw) == size


@pytest.mark.parametrize(
    'raw',
    [
        '',
        ' ',
        'MB',
        '-1',
        '-1MB',
        '+1MB',
        'nan',
        'NaN',
        'inf',
        '1e6',
        '1,5MB',
        '1.',
        '.5MB',
        '1.5.1GB',
        '3 M B',
        '3 megabytes',
        '3 Mbit',
        '3ZB',
        '3 YiB',
        '3 xb',
        '１２MB',
        '²',
        '1.²',
        '9' * 41,
        '9' * 5000,
        # Over the largest signed 64-bit number, the quota column's limit.
        '9223372036854775808',
        '8EiB',
        '10000000TB',
    ],
)
def test_other_texts_are_refused_saying_what_a_size_is(raw):
    with pytest.raises(ValueError, match=r'^a size in bytes such as 1000, 512k'):
        byte_size(raw)


def test_the_largest_size_is_the_largest_bigint():
    assert byte_size(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    ('size', 'text'),
    [
        (0, '0 B'),
        (1, '1 B'),
        (512, '512 B'),
        (999, '999 B'),
        (1000, '1 kB'),
        (1024, '1 kB'),
        (1500, '1.5 kB'),
        (9_999, '9.9 kB'),
        (10_000, '10 kB'),
        (200_000, '200 kB'),
        (999_999, '999 kB'),
        (2_000_000, '2 MB'),
        (2_040_000, '2 MB'),
        (2_860_000, '2.8 MB'),
        (3_000_000, '3 MB'),
        (10 * 1024**3, '10 GB'),
        (1_500_000_000_000, '1.5 TB'),
        (7 * 10**15, '7 PB'),
        (2**63 - 1, '9.2 EB'),
        (10**22, '10000 EB'),
        (-1500, '-1.5 kB'),
    ],
)
def test_sizes_shown_in_decimal_units_rounded_down(size, text):
    assert format_bytes(size) == text


@pytest.mark.parametrize(
    'size', [0, 999, 1000, 2_800_000, 10**9, 42 * 10**12, 2**63 - 1]
)
def test_what_is_shown_reads_back_as_at_most_the_size(size):
    assert byte_size(format_bytes(size)) <= size
    assert byte_size(format_bytes(size)) * 1.1 >= size

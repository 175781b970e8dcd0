"""Signed, expiring URLs (asgilook.http.signing): who passes, who does not."""

import urllib.parse

import pytest

from asgilook.http.signing import Signer

SECRET = b'a secret of thirty-two bytes ...'
OLD_SECRET = b'the secret that signed last week'
PATH = '/images/36562622-48e5-4a61-be67-e426b11821ed.jpeg'
NOW = 1_700_000_000.25
TTL = 3600


class Clock:
    """A clock that tests move by hand."""

    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def signer(secrets=(SECRET,), ttl=TTL, clock=None):
    return Signer(secrets, ttl, clock or Clock())


def params(url):
    """The path, expires and signature of a signed URL."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    return parts.path, query['expires'], query['signature']


def test_a_signed_url_is_the_path_with_an_expiry_and_a_signature():
    url = signer().sign(PATH)
    path, expires, signature = params(url)
    assert url == f'{PATH}?expires={expires}&signature={signature}'
    assert path == PATH
    # 16 bytes of MAC, URL-safe base64 without padding.
    assert len(signature) == 22
    assert set(signature) <= set(
        'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    )


def test_a_signed_url_is_valid():
    assert signer().valid(*params(signer().sign(PATH)))


def test_a_query_is_kept_and_the_path_alone_signed():
    url = signer().sign(f'{PATH}?format=webp')
    assert url.startswith(f'{PATH}?format=webp&expires=')
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query['format'] == 'webp'
    assert signer().valid(PATH, query['expires'], query['signature'])


@pytest.mark.parametrize('position', [0, 5, 21])
def test_a_signature_with_one_character_changed_is_refused(position):
    path, expires, signature = params(signer().sign(PATH))
    changed = 'B' if signature[position] == 'A' else 'A'
    forged = signature[:position] + changed + signature[position + 1 :]
    assert not signer().valid(path, expires, forged)


def test_another_expiry_with_the_same_signature_is_refused():
    path, expires, signature = params(signer().sign(PATH))
    assert not signer().valid(path, str(int(expires) - 60), signature)


def test_another_path_is_refused():
    _, expires, signature = params(signer().sign(PATH))
    for other in (
        '/images/3bc731ac-8cd8-4f39-b6fe-1a195d3b4e74.jpeg',
        f'{PATH}x',
        PATH.upper(),
        f'/thumbnails/{PATH.removeprefix("/images/")}',
    ):
        assert not signer().valid(other, expires, signature)


def test_another_secret_is_refused():
    url = signer(secrets=(b'somebody else entirely',)).sign(PATH)
    assert not signer().valid(*params(url))


def test_an_expired_url_is_refused():
    clock = Clock()
    url = signer(clock=clock).sign(PATH)
    expires = int(params(url)[1])
    clock.now = expires - 0.5
    assert signer(clock=clock).valid(*params(url))
    clock.now = expires
    assert not signer(clock=clock).valid(*params(url))
    clock.now = expires + 86400
    assert not signer(clock=clock).valid(*params(url))


def test_the_expiry_is_at_least_the_ttl_rounded_up_to_a_step():
    for ttl, step in ((TTL, 360), (60, 60), (1, 60), (86400, 8640), (599, 60)):
        clock = Clock()
        one = signer(ttl=ttl, clock=clock)
        assert one.step == step
        for offset in (0, 0.5, 1, step / 2, step - 1, step):
            clock.now = NOW + offset
            expires = int(params(one.sign(PATH))[1])
            assert expires % step == 0
            assert clock.now + ttl <= expires < clock.now + ttl + step


def test_urls_stay_the_same_within_a_step_and_change_after_it():
    clock = Clock(now=1_000_000 * 360 - TTL + 1)
    one = signer(clock=clock)
    first = one.sign(PATH)
    clock.now += 358.9
    assert one.sign(PATH) == first
    clock.now += 0.1
    assert one.sign(PATH) == first
    clock.now += 0.5
    later = one.sign(PATH)
    assert later != first
    assert int(params(later)[1]) == int(params(first)[1]) + 360
    # Both still open the picture.
    assert one.valid(*params(first))
    assert one.valid(*params(later))


def test_rotation_the_new_secret_signs_and_the_old_still_verifies():
    old_url = signer(secrets=(OLD_SECRET,)).sign(PATH)
    rotated = signer(secrets=(SECRET, OLD_SECRET))
    assert rotated.valid(*params(old_url))
    new_url = rotated.sign(PATH)
    assert new_url == signer(secrets=(SECRET,)).sign(PATH)
    assert new_url != old_url
    # Once the old secret is dropped, its links stop working.
    assert not signer(secrets=(SECRET,)).valid(*params(old_url))
    assert not signer(secrets=(OLD_SECRET,)).valid(*params(new_url))


def test_an_expiry_further_than_any_signed_is_refused():
    clock = Clock()
    one = signer(clock=clock)
    # What a forger would want: a link for ever. Signed with the secret (as
    # after a leak of one old link's secret), it is still refused.
    far = int(NOW) + 10 * TTL
    signature = one._signature(SECRET, PATH, far)
    assert not one.valid(PATH, str(far), signature)
    # The furthest this service signs, and a little clock skew, pass.
    edge = int(NOW + TTL + one.step + one.SKEW)
    assert one.valid(PATH, str(edge), one._signature(SECRET, PATH, edge))
    beyond = edge + 1
    assert not one.valid(PATH, str(beyond), one._signature(SECRET, PATH, beyond))


def test_a_link_signed_on_a_machine_whose_clock_is_ahead_passes():
    # Signed at the very start of a step: the furthest expiry it signs.
    clock = Clock(now=1_000_000 * 360 - TTL + 0.001)
    url = signer(clock=clock).sign(PATH)
    assert signer(clock=Clock(now=clock.now - 20)).valid(*params(url))


@pytest.mark.parametrize(
    ('expires', 'signature'),
    [
        (None, None),
        (None, 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1700003600', None),
        ('', ''),
        ('', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1700003600', ''),
        ('abc', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('-1', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('+1700003600', 'AAAAAAAAAAAAAAAAAAAAAA'),
        (' 1700003600', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1_700_003_600', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1700003600.0', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1e10', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('nan', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('١٧٠٠٠٠٣٦٠٠', 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('9' * 21, 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('9' * 5000, 'AAAAAAAAAAAAAAAAAAAAAA'),
        ('1700003600', 'é' * 22),
        ('1700003600', '\udcff' * 22),
        ('1700003600', '\x00'),
        ('1700003600', 'A' * 100_000),
    ],
)
def test_garbage_is_refused_without_an_error(expires, signature):
    assert not signer().valid(PATH, expires, signature)


def test_other_spellings_of_a_good_signature_or_expiry_are_refused():
    path, expires, signature = params(signer().sign(PATH))
    assert signer().valid(path, expires, signature)
    for other in (
        f'{signature}==',
        f'{signature}=',
        f'{signature} ',
        signature.replace('-', '+').replace('_', '/')
        if set('-_') & set(signature)
        else f'{signature}A',
    ):
        assert not signer().valid(path, expires, other)
    assert not signer().valid(path, f'0{expires}', signature)


def test_odd_paths_are_signed_and_checked_too():
    one = signer()
    for path in ('', '/\x00', '/\udcff', '/é\n1700003600', '/' * 10_000):
        query = one.sign(path).rsplit('?', 1)[1]
        expires, signature = (part.split('=', 1)[1] for part in query.split('&'))
        assert one.valid(path, expires, signature)
        assert not one.valid(f'{path}x', expires, signature)


@pytest.mark.parametrize(
    ('one', 'other'),
    [
        (('/a', 1700003880), ('/a1', 700003880)),
        (('/a', 1700003880), ('/a17', 3880)),
        (('/x', 15), ('5\n/x', 1)),
        (('/x\n1', 5), ('/x', 15)),
    ],
)
def test_no_other_path_and_expiry_make_the_same_message(one, other):
    assert signer()._signature(SECRET, *one) != signer()._signature(SECRET, *other)


@pytest.mark.parametrize(
    ('secrets', 'ttl'),
    [((), TTL), ((b'',), TTL), ((SECRET, b''), TTL), ((SECRET,), 0)],
)
def test_a_signer_needs_secrets_and_a_ttl(secrets, ttl):
    with pytest.raises(ValueError):
        Signer(secrets, ttl)


def test_the_real_clock_is_the_default():
    one = Signer([SECRET], TTL)
    assert one.valid(*params(one.sign(PATH)))

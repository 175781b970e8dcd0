"""Sending schemathesis cases to a live server and checking the answers
against the OpenAPI document (for tests/test_openapi*.py)."""

import urllib.parse

import falcon
import msgpack
import requests
import schemathesis
from schemathesis.checks import allow_header_conformance
from schemathesis.checks import content_type_conformance
from schemathesis.checks import negative_data_rejection
from schemathesis.checks import not_a_server_error
from schemathesis.checks import response_headers_conformance
from schemathesis.checks import response_schema_conformance
from schemathesis.checks import status_code_conformance
from schemathesis.checks import unsupported_method
from schemathesis.core.failures import Failure
from schemathesis.core.failures import FailureGroup

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    # Other methods are 405, and Allow lists the documented ones.
    unsupported_method,
    allow_header_conformance,
]


@schemathesis.deserializer(falcon.MEDIA_MSGPACK)
def _msgpack(ctx, response):
    return msgpack.unpackb(response.content)


def send(case, base_url, failures):
    """Send ``case``; add what the checks found, in words, to ``failures``.

    Returns the response, or None if there was none.
    """
    try:
        response = case.call(base_url=base_url)
    except requests.RequestException as ex:
        failures.append(f'{case.as_curl_command(base_url=base_url)}\n  {ex!r}')
        return None
    try:
        case.validate_response(
            response, checks=CHECKS, transport_kwargs={'base_url': base_url}
        )
    except (Failure, FailureGroup) as ex:
        found = ex.exceptions if isinstance(ex, FailureGroup) else [ex]
        failures.extend(
            f'{case.as_curl_command(base_url=base_url)}\n'
            f'  {response.status_code} {response.content[:300]!r}\n'
            f'  {failure.title}: {failure.message}'
            for failure in found
        )
    return response


def expecting(base_url, failures):
    """``expect(status, case)``: send ``case`` as :func:`send` does, adding
    to ``failures``; its response, which must be of ``status``."""

    def expect(status, case):
        response = send(case, base_url, failures)
        assert response is not None, failures
        assert response.status_code == status, case.as_curl_command()
        return response

    return expect


def header(response, name):
    """The one value of a header of a schemathesis ``response``."""
    (value,) = response.headers[name.lower()]
    return value


def bearer(token):
    """The ``Authorization`` header that sends ``token``."""
    return {'Authorization': f'Bearer {token}'}


def signed_link(uri):
    """The path of a signed link, and its query's parameters."""
    parts = urllib.parse.urlsplit(uri)
    return parts.path, dict(urllib.parse.parse_qsl(parts.query))

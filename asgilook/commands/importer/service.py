"""``asgilook import --url``: pictures sent to a running service, over HTTP."""

from __future__ import annotations

import mimetypes
import os
import pathlib

import httpx

from asgilook.commands.importer.target import Refused
from asgilook.commands.importer.target import TargetUnavailable


class Service:
    """A running service, over HTTP: ``POST /images``."""

    # Seconds an upload may take; uploads wait for each other on the service.
    TIMEOUT = 120.0
    CONNECT_TIMEOUT = 10.0
    # The service says its own limit, when it refuses a picture.
    max_bytes: int | None = None
    warning: str | None = None

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.name = url
        self._client = client

    @classmethod
    async def open(cls, url: str, jobs: int) -> Service:
        """Connect, and check that an asgilook service answers at ``url``.

        Raises:
            TargetUnavailable: it cannot be reached, or is not asgilook.
        """
        client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(cls.TIMEOUT, connect=cls.CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=jobs),
            # NOTE: The service may answer MessagePack; this reads JSON.
            headers={'Accept': 'application/json'},
        )
        try:
            await cls._check(client, url)
        except BaseException:
            await client.aclose()
            raise
        return cls(url, client)

    @staticmethod
    async def _check(client: httpx.AsyncClient, url: str) -> None:
        try:
            response = await client.get('/images', params={'limit': 1})
        except httpx.TransportError as ex:
            raise TargetUnavailable(
                f'cannot reach the service at {url} ({_failure(ex)}). Is it '
                'running? Start it with `asgilook serve`, or give its address '
                'with --url.'
            ) from ex
        if response.status_code != 200:
            raise TargetUnavailable(
                f'{url} does not answer as an asgilook service: GET /images is '
                f'"{response.status_code} {response.reason_phrase}". Give the '
                "service's address with --url."
            )

    async def upload(self, path: pathlib.Path, data: bytes) -> tuple[str, str]:
        content_type = mimetypes.guess_type(path.name)[0] or 'application/octet-stream'
        try:
            response = await self._client.post(
                '/images', content=data, headers={'Content-Type': content_type}
            )
        except httpx.TransportError as ex:
            raise TargetUnavailable(
                f'lost the service at {self.name} ({_failure(ex)}); run the same '
                'command again to go on once it is back.'
            ) from ex
        if response.status_code != 201:
            raise Refused(_description(response))
        document = response.json()
        return str(document['id']), str(document['delete_token'])

    async def close(self) -> None:
        await self._client.aclose()


def _failure(ex: httpx.TransportError) -> str:
    """Why a request failed, in words."""
    if isinstance(ex, httpx.TimeoutException):
        return 'it did not answer in time'
    # NOTE: httpx says "All connection attempts failed"; the operating
    #   system's own words are in the error that this one comes from.
    cause: BaseException | None = ex
    while cause is not None:
        number = getattr(cause, 'errno', None)
        if isinstance(number, int):
            return os.strerror(number)
        cause = cause.__cause__ or cause.__context__
    return str(ex) or type(ex).__name__


def _description(response: httpx.Response) -> str:
    """The words of an error answer: its JSON ``description``, or its status."""
    try:
        error = response.json()
        return str(error['description'])
    except (ValueError, KeyError, TypeError):
        return (
            f'The service answered "{response.status_code} {response.reason_phrase}".'
        )

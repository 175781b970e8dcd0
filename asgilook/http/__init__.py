"""The HTTP face of the service: the Falcon app, its resources and its errors.

- ``app``: :func:`~asgilook.http.app.create_app` wires config, store, cache,
  resources and error handlers; :class:`~asgilook.http.app.App` is the ASGI
  front door, which answers ``414`` and ``431`` and replays remembered images
  before Falcon routes anything.
- ``limits``: the request head's limits (target, query string, headers).
- ``mount``: the app under a path prefix (the ASGI ``root_path``): the app's
  own paths for every layer, and the prefix on the URLs of the headers sent.
- ``edge``: what every answer says at the edge (``nosniff``, CORS), the
  ``501`` of unknown methods, and one ``Allow`` (``OPTIONS``) on every route.
- ``images``: the resources of the image collection, single images and
  thumbnails.
- ``uploads``: reading an upload's bytes, raw or as a form, within its limits.
- ``sharing``: who may upload, see and delete what: upload keys (quotas,
  rates), visibility, and the signed links of private pictures.
- ``signing``: signed, expiring URLs (HMAC, rotatable secrets).
- ``pages``: a page per picture, ``GET /pictures/{id}``, that unfurls.
- ``formats``: JSON or MessagePack, by ``Accept``.
- ``advice``: Falcon's errors (no route, wrong method, bad parameter) mapped to
  the service's titles, with a hint of what the client meant.
- ``health``: ``GET /healthz``.
- ``metrics``: ``GET /metrics``, Prometheus, across workers.
- ``events``: ``GET /events``, live uploads and deletions (Server-Sent Events).
- ``gallery``: the gallery page, ``GET /``, and its ``static/`` assets.
- ``openapi``: the OpenAPI document, ``GET /openapi.json`` (a package).

With asgilook.caching, this is the only package that imports Falcon. It may
import asgilook.caching, asgilook.storage, asgilook.pictures, asgilook.config
and asgilook.errors; never asgilook.commands, nor the tutorial's thin modules
(asgilook.app, asgilook.asgi, asgilook.store, asgilook.images, asgilook.cache),
which import it. ``lint-imports`` checks the layers and the forbidden imports
(the contracts in pyproject.toml).
"""

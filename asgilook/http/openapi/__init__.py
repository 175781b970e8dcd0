"""The OpenAPI 3.1 document of the service, ``GET /openapi.json``.

Every route, parameter, request body, response, header and error of the app
is described here, in one Python dict built when the app is made, from the
same constants the resources use. The tests keep it true: each route of the
app, with each of its methods, must be in it (and nothing else), and a
schemathesis run against a live server checks every answer against it.

By part of the document:

- ``common``: media types, patterns and the ``$ref`` helpers all parts use.
- ``schemas``: ``components.schemas`` (the image documents, error, health, event).
- ``parameters``: ``components.parameters`` (path, query and header parameters).
- ``responses``: ``components.headers`` and ``components.responses``, and the
  table of errors that operations name by status.
- ``paths``: the table of routes, each with its ``OPTIONS`` and what other
  methods get (``x-other-methods``), and the ``414``/``431`` every operation has;
  its operations come from ``paths_images`` (pictures and thumbnails),
  ``paths_gallery`` (the page, its assets and events) and ``paths_service``
  (health, metrics, this document).
- ``root``: the whole document, with its info, servers and tags; and the
  headers every answer has (``nosniff``, CORS, ``Cache-Status``), added to
  every response.
- ``resource``: :class:`OpenAPI`, the resource that serves it.
"""

from asgilook.http.openapi.resource import OpenAPI
from asgilook.http.openapi.root import document

__all__ = ['OpenAPI', 'document']

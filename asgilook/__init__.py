"""asgilook: a self-hosted image-sharing service on Falcon ASGI.

The packages, from the top layer down; each imports only those below it
(``make lint`` checks it with import-linter, ``[tool.importlinter]`` in
``pyproject.toml``), and each package's docstring says what lives in it:

- :mod:`asgilook.commands`: the ``asgilook`` command (serve, import, check)
  and the processes it starts. Nothing imports it.
- :mod:`asgilook.http`: the app: Falcon wiring, the ASGI front door,
  resources, uploads, negotiation, errors, OpenAPI, metrics, events, gallery.
- :mod:`asgilook.caching`: conditional requests, the in-process memory of
  responses, the Redis cache and its guard.
- :mod:`asgilook.storage`: the store (pictures and thumbnails on disk) and
  the index (SQLite or PostgreSQL).
- :mod:`asgilook.pictures`: bytes to bytes: decoding, colour, animation,
  renditions; Pillow, no files, no Falcon.

Beside them: :mod:`asgilook.settings` (every ``ASGI_LOOK_*`` variable,
declared once), :mod:`asgilook.config` (the :class:`~asgilook.config.Config`
built from them) and :mod:`asgilook.errors` (the domain errors that
:mod:`asgilook.http` maps to HTTP). The tutorial's module names
(:mod:`asgilook.app`, :mod:`asgilook.asgi`, :mod:`asgilook.store`,
:mod:`asgilook.images`, :mod:`asgilook.cache`) are kept as thin modules for
its users; nothing inside the packages imports them.
"""

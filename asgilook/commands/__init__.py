"""The ``asgilook`` command and the processes it starts: the top layer.

* :mod:`~asgilook.commands.cli`: the ``asgilook`` command's arguments and
  help; it calls the command asked for.
* :mod:`~asgilook.commands.defaults`: the defaults of the commands' options
  (host, port, service URL, jobs, grace, storage directory, manifest).
* :mod:`~asgilook.commands.serve`: ``asgilook serve`` and ``make run``:
  uvicorn, on a private Redis unless one is given.
* :mod:`~asgilook.commands.importer`: ``asgilook import``: folders of
  pictures into a running service, or into a storage directory.
* :mod:`~asgilook.commands.check`: ``asgilook check [--repair] [--verify]``:
  the stored objects against the index, and their repair.
* :mod:`~asgilook.commands.migrate`: ``asgilook migrate --to URL``: every
  object copied to another directory or bucket, verified and resumable.
* :mod:`~asgilook.commands.rekey`: ``asgilook rekey``: every object sealed
  under the current encryption key.
* :mod:`~asgilook.commands.objects_walk`, ``objects_output`` and
  ``objects_args``: what migrate and rekey share: walking every object of a
  storage a page at a time, the progress and summary, and their options.
* :mod:`~asgilook.commands.processes`: helpers for the processes the commands
  (and the tests and benchmarks) start: free ports, a private Redis, waiting,
  stopping.

The rule: this is the top layer. Its modules may import everything of
asgilook (http, caching, storage, pictures, config, errors), and nothing of
asgilook imports them: only the entry points do, the ``asgilook`` script and
``python -m asgilook`` (which run :func:`asgilook.commands.cli.main`), and
the tests and benchmarks. import-linter keeps this (see
``[tool.importlinter]`` in pyproject.toml). Among the commands, ``cli`` is
imported by none of them, and ``defaults`` and ``processes`` import no
command, so that they import each other without a cycle.
"""

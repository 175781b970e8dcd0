"""``python -m asgilook``: the ``asgilook`` command (see :mod:`asgilook.cli`)."""

import sys

from asgilook.cli import main

# NOTE: No ``if __name__ == '__main__'``: this module is only ever run.
sys.exit(main())

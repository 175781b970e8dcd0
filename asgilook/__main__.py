"""``python -m asgilook``: the ``asgilook`` command (:mod:`asgilook.commands.cli`)."""

import sys

from asgilook.commands.cli import main

# NOTE: No ``if __name__ == '__main__'``: this module is only ever run.
sys.exit(main())

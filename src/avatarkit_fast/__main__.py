"""``python -m avatarkit_fast``: the ``avatarkit-fast`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

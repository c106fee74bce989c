"""``python -m avatarkit_fast.server``: run the local motion server."""

import sys

from .app import main

sys.exit(main())

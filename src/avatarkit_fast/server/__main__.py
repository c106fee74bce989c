"""``python -m avatarkit_fast.server``: run the local motion server (``avatarkit-fast serve``)."""

import sys

from ..cli.serve import main

sys.exit(main())

"""Decides once whether the compiled modules are used.

``AVATARKIT_NO_EXTENSIONS=1`` (or any interpreter but CPython) selects the
pure-Python twins everywhere; the build in ``setup.py`` reads the same variable.
"""

import os
import platform

NO_EXTENSIONS: bool = (
    os.environ.get("AVATARKIT_NO_EXTENSIONS", "") not in ("", "0")
    or platform.python_implementation() != "CPython"
)

__all__ = ["NO_EXTENSIONS"]

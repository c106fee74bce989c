"""Decides once whether the compiled modules are used, and loads them.

``AVATARKIT_NO_EXTENSIONS=1`` (or any interpreter but CPython) selects the
pure-Python twins everywhere; the build in ``setup.py`` reads the same variable.
:func:`load_twin` is the one place that picks a compiled module or its twin.
"""

from __future__ import annotations

import importlib
import os
import platform
from types import ModuleType
from typing import Optional

NO_EXTENSIONS: bool = (
    os.environ.get("AVATARKIT_NO_EXTENSIONS", "") not in ("", "0")
    or platform.python_implementation() != "CPython"
)

__all__ = ["NO_EXTENSIONS", "IMPLS", "load_twin"]

IMPLS = ("c", "py")


def load_twin(name: str, impl: Optional[str] = None) -> ModuleType:
    """The module ``avatarkit_fast._{name}_c`` or its twin ``_{name}_py``.

    ``impl`` None: the compiled one unless :data:`NO_EXTENSIONS`, the twin
    only where the compiled one was never built (a source tree); ``"c"``:
    the compiled one, ImportError if it is absent; ``"py"``: the twin.
    Any other ``impl`` is a ValueError.
    """
    if impl is None:
        if NO_EXTENSIONS:
            return importlib.import_module(f"avatarkit_fast._{name}_py")
        try:
            return _compiled(name)
        except ModuleNotFoundError as exc:
            # Only the compiled module itself missing falls back; a broken
            # build (an import error inside it) is raised.
            if exc.name != f"avatarkit_fast._{name}_c":
                raise
            return importlib.import_module(f"avatarkit_fast._{name}_py")
    if impl == "c":
        return _compiled(name)
    if impl == "py":
        return importlib.import_module(f"avatarkit_fast._{name}_py")
    raise ValueError(f"impl must be 'c', 'py' or None, got {impl!r}")


def _compiled(name: str) -> ModuleType:
    full = f"avatarkit_fast._{name}_c"
    mod = importlib.import_module(full)
    # In a source tree ``_X_c.py`` is the link to the twin that the build
    # compiles: imported as source it is not the compiled module.
    if (getattr(mod, "__file__", None) or "").endswith(".py"):
        raise ModuleNotFoundError(f"{full} is not built (only its source {mod.__file__})", name=full)
    return mod

"""The audio-clock synchronisation engine.

``_sync_py`` is written once; ``_sync_c`` is the same source compiled against
``_sync_c.pxd``.  The compiled one is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset; :func:`avatarkit_fast._compat.load_twin`
chooses).  :func:`module` gives either one by name, for the controller's
engine choice.
"""

from types import ModuleType
from typing import Optional

from ._compat import load_twin


def module(impl: Optional[str] = None) -> ModuleType:
    """``_sync_c`` or ``_sync_py`` (``impl`` as for ``load_twin``)."""
    return load_twin("sync", impl)


_impl = module()
EV_FIRST_FRAME = _impl.EV_FIRST_FRAME
EV_STALL = _impl.EV_STALL
EV_STATE = _impl.EV_STATE
IDLE = _impl.IDLE
PAUSED = _impl.PAUSED
PLAYING = _impl.PLAYING
SyncEngine = _impl.SyncEngine

__all__ = ["EV_FIRST_FRAME", "EV_STALL", "EV_STATE", "IDLE", "PAUSED", "PLAYING", "SyncEngine", "module"]

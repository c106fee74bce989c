"""The audio-clock synchronisation engine.

``_sync_py`` is written once; ``_sync_c`` is the same source compiled against
``_sync_c.pxd``.  The compiled one is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset).
"""

from ._compat import NO_EXTENSIONS

if NO_EXTENSIONS:  # pragma: no cover - exercised by the no-extensions CI run
    from ._sync_py import (
        EV_FIRST_FRAME, EV_STALL, EV_STATE, IDLE, PAUSED, PLAYING, SyncEngine,
    )
else:
    try:
        from ._sync_c import (
            EV_FIRST_FRAME, EV_STALL, EV_STATE, IDLE, PAUSED, PLAYING, SyncEngine,
        )
    except ImportError:  # pragma: no cover - source tree without a build
        from ._sync_py import (
            EV_FIRST_FRAME, EV_STALL, EV_STATE, IDLE, PAUSED, PLAYING, SyncEngine,
        )

__all__ = ["EV_FIRST_FRAME", "EV_STALL", "EV_STATE", "IDLE", "PAUSED", "PLAYING", "SyncEngine"]

"""Playout buffers: the int16 PCM ring and the float32 keyframe store.

The compiled ``_ring_c`` is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset); ``_ring_py`` is its pure-Python twin.
"""

from ._compat import NO_EXTENSIONS

if NO_EXTENSIONS:  # pragma: no cover - exercised by the no-extensions CI run
    from ._ring_py import KEYFRAME_FLOATS, KeyframeStore, PcmRing
else:
    try:
        from ._ring_c import KEYFRAME_FLOATS, KeyframeStore, PcmRing
    except ImportError:  # pragma: no cover - source tree without a build
        from ._ring_py import KEYFRAME_FLOATS, KeyframeStore, PcmRing

__all__ = ["KEYFRAME_FLOATS", "KeyframeStore", "PcmRing"]

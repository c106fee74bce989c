"""Playout buffers: the int16 PCM ring and the float32 keyframe store.

The compiled ``_ring_c`` is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset); ``_ring_py`` is its pure-Python twin
(:func:`avatarkit_fast._compat.load_twin` chooses).  :func:`module` gives
either one by name, for the controller's engine choice.
"""

from types import ModuleType
from typing import Optional

from ._compat import load_twin


def module(impl: Optional[str] = None) -> ModuleType:
    """``_ring_c`` or ``_ring_py`` (``impl`` as for ``load_twin``)."""
    return load_twin("ring", impl)


_impl = module()
KEYFRAME_FLOATS = _impl.KEYFRAME_FLOATS
KeyframeStore = _impl.KeyframeStore
PcmRing = _impl.PcmRing

__all__ = ["KEYFRAME_FLOATS", "KeyframeStore", "PcmRing", "module"]

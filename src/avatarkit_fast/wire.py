"""AvatarKit wire codec: protobuf ``message.Message`` envelopes <-> keyframe
arrays, without the ``protobuf`` package.

The compiled ``_wire_c`` is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset); ``_wire_py`` is its pure-Python twin
with the same behaviour (:func:`avatarkit_fast._compat.load_twin` chooses).
See ``_wire_py`` for the accepted encodings.
"""

from ._compat import load_twin

_impl = load_twin("wire")
__all__ = list(_impl.__all__)
globals().update({name: getattr(_impl, name) for name in __all__})
del load_twin

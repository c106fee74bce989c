"""AvatarKit wire codec: protobuf ``message.Message`` envelopes <-> keyframe
arrays, without the ``protobuf`` package.

The compiled ``_wire_c`` is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset); ``_wire_py`` is its pure-Python twin
with the same behaviour.  See ``_wire_py`` for the accepted encodings.
"""

from ._compat import NO_EXTENSIONS

if NO_EXTENSIONS:  # pragma: no cover - exercised by the no-extensions CI run
    from ._wire_py import *  # noqa: F401,F403
    from ._wire_py import __all__
else:
    try:
        from ._wire_c import *  # noqa: F401,F403
        from ._wire_c import __all__
    except ImportError:  # pragma: no cover - source tree without a build
        from ._wire_py import *  # noqa: F401,F403
        from ._wire_py import __all__

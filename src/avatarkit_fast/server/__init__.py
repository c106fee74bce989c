"""The local motion server: the AvatarKit driving protocol on loopback.

``avatarkit-fast serve`` (or ``python -m avatarkit_fast.server``) runs it;
:class:`MotionServer` embeds it in an asyncio program.  It shares the wire
codec with the client side and nothing else.  Modules:

- :mod:`~avatarkit_fast.server.auth`: API keys, session tokens, avatar ids;
- :mod:`~avatarkit_fast.server.protocol`: one client session (handshake,
  request generation in the service's batching, error codes);
- :mod:`~avatarkit_fast.server.app`: the aiohttp application, ``MotionServer``,
  ``serve`` / ``serve_async``;
- :mod:`~avatarkit_fast.server.motion`: the keyframes made from the audio.

The HTTP/WebSocket layer needs ``aiohttp`` (the ``server`` extra): the names
from ``app`` load on first use and raise ImportError naming the extra
without it; ``MotionSynth`` and ``synthesize`` need nothing more.
"""

from .motion import MotionSynth, synthesize

_FROM_APP = ("FIRST_BATCH", "NEXT_BATCH", "MotionServer", "ServerStats", "serve", "serve_async")


def __getattr__(name: str):
    if name not in _FROM_APP:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import app

    value = getattr(app, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


__all__ = [
    "FIRST_BATCH",
    "MotionServer",
    "MotionSynth",
    "NEXT_BATCH",
    "ServerStats",
    "serve",
    "serve_async",
    "synthesize",
]

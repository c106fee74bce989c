"""avatarkit_fast: host-mode runtime for real-time talking avatars."""

from .errors import (
    AudioDeviceError,
    AuthenticationFailed,
    AvatarKitError,
    BufferFull,
    ClosedError,
    ConcurrencyLimit,
    ConnectionFailed,
    CreditsExhausted,
    DecodeError,
    EncodeError,
    HandshakeTimeout,
    ProtocolError,
    RelayError,
    RelayGap,
    ServerError,
    SessionTimeout,
    UpstreamUnavailable,
)
from .controller import AvatarController, ConversationState
from .group import SessionGroup

__version__ = "0.1.0"

# SDK mode pulls in asyncio and websockets; a host-mode program that never
# uses it should not pay for that at import time.
_LAZY = {
    "AvatarSession": "session",
    "ConnectionState": "session",
    "fetch_session_token": "session",
    "MotionConnection": "session",
    "SoundDevicePlayer": "playback",
    "VirtualClock": "playback",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)

__all__ = [
    "AudioDeviceError",
    "AuthenticationFailed",
    "AvatarKitError",
    "AvatarController",
    "AvatarSession",
    "BufferFull",
    "ClosedError",
    "ConcurrencyLimit",
    "ConnectionFailed",
    "ConnectionState",
    "ConversationState",
    "CreditsExhausted",
    "DecodeError",
    "EncodeError",
    "HandshakeTimeout",
    "MotionConnection",
    "ProtocolError",
    "RelayError",
    "RelayGap",
    "ServerError",
    "SessionGroup",
    "SessionTimeout",
    "SoundDevicePlayer",
    "UpstreamUnavailable",
    "VirtualClock",
    "__version__",
    "fetch_session_token",
]

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
    ServerError,
    SessionTimeout,
    UpstreamUnavailable,
)
from .controller import AvatarController, ConversationState
from .session import AvatarSession, ConnectionState, fetch_session_token

__version__ = "0.1.0"

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
    "ProtocolError",
    "RelayError",
    "ServerError",
    "SessionTimeout",
    "UpstreamUnavailable",
    "__version__",
    "fetch_session_token",
]

"""avatarkit_fast: host-mode runtime for real-time talking avatars."""

from .errors import (
    AvatarKitError,
    BufferFull,
    ClosedError,
    DecodeError,
    EncodeError,
    ProtocolError,
    RelayError,
    ServerError,
)

__version__ = "0.1.0"

__all__ = [
    "AvatarKitError",
    "BufferFull",
    "ClosedError",
    "DecodeError",
    "EncodeError",
    "ProtocolError",
    "RelayError",
    "ServerError",
    "__version__",
]

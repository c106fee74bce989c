"""The one exception hierarchy of avatarkit_fast, shared by the compiled
modules and their pure-Python twins.

Every error the package raises on purpose is an :class:`AvatarKitError`;
errors about bad values also derive from :class:`ValueError` so that callers
who only know the standard library can still catch them.
"""

from __future__ import annotations


class AvatarKitError(Exception):
    """Base class of every error raised by avatarkit_fast."""


class DecodeError(AvatarKitError, ValueError):
    """Bytes from the wire are not a valid message.

    The message names what was expected, what was found and the byte offset.
    ``offset`` is that offset (or -1 where it does not apply).
    ``envelope_index`` is the index of the offending envelope in a list of
    them (``AvatarController.yield_frames_data``), else None.
    """

    envelope_index: int | None = None

    def __init__(self, message: str, offset: int = -1) -> None:
        super().__init__(message)
        self.offset = offset


class EncodeError(AvatarKitError, ValueError):
    """Values cannot be encoded (wrong shape, dtype, or out of range)."""


class BufferFull(AvatarKitError):
    """A buffer reached its configured cap; nothing already buffered was lost."""


class ClosedError(AvatarKitError):
    """The object was closed; no further calls are accepted."""


class AudioDeviceError(AvatarKitError):
    """No sound output is possible here: PortAudio, ``sounddevice`` or a device is missing."""


class RelayError(DecodeError):
    """A relay frame is malformed, or of an unknown version or kind."""


class RelayGap(RelayError):
    """Frames of a request never arrived: the receiver gave up waiting for
    ``count`` frames from sequence number ``first`` of ``req_id`` and went on
    with the frames after them.  Reported, never raised by ``feed``."""

    def __init__(self, message: str, req_id: str, first: int, count: int) -> None:
        super().__init__(message, -1)
        self.req_id = req_id
        self.first = first
        self.count = count


class ProtocolError(AvatarKitError):
    """A peer broke the AvatarKit driving protocol (handshake, message order)."""


class HandshakeTimeout(ProtocolError):
    """The motion server did not confirm the session in time."""


class ConnectionFailed(AvatarKitError):
    """The connection to the motion server could not be made, or dropped without
    a close code that names a reason. ``code`` is the WebSocket close code, if any.
    Trying again may succeed."""

    retryable = True

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ServerError(AvatarKitError):
    """The motion server reported an error (a ``ServerError`` envelope or close code).

    ``retryable`` says whether the same request may succeed if tried again later.
    """

    retryable = False

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CreditsExhausted(ServerError):
    """The application has no credits left (close code 4001)."""


class SessionTimeout(ServerError):
    """The session reached its maximum duration (close code 4002)."""


class ConcurrencyLimit(ServerError):
    """Too many concurrent sessions for the application (close code 4003)."""


class AuthenticationFailed(ServerError):
    """The API key, app id or session token was refused (close code 4010)."""


class UpstreamUnavailable(ServerError):
    """The motion service behind the ingress is unavailable (close code 4503);
    trying again later may succeed."""

    retryable = True


__all__ = [
    "AudioDeviceError",
    "AuthenticationFailed",
    "AvatarKitError",
    "BufferFull",
    "ClosedError",
    "ConcurrencyLimit",
    "ConnectionFailed",
    "CreditsExhausted",
    "DecodeError",
    "EncodeError",
    "HandshakeTimeout",
    "ProtocolError",
    "RelayError",
    "RelayGap",
    "ServerError",
    "SessionTimeout",
    "UpstreamUnavailable",
]

"""Refusals of the motion server and its console, mapped to named errors.

A WebSocket close code or a ``ServerError`` code (:func:`error_for_code`) and
an HTTP status with its JSON error body (:func:`error_for_http_response`)
become one class of the package's hierarchy (:mod:`avatarkit_fast.errors`),
with the server's words kept in the message.
"""

from __future__ import annotations

import json

from ..errors import (
    AuthenticationFailed,
    AvatarKitError,
    ConcurrencyLimit,
    ConnectionFailed,
    CreditsExhausted,
    ServerError,
    SessionTimeout,
    UpstreamUnavailable,
)

__all__ = ["CLOSE_CODE_ERRORS", "error_for_code", "error_for_http_response"]

#: Close codes (and ``ServerError`` codes) of the motion server, by the error they mean.
CLOSE_CODE_ERRORS: dict[int, tuple[type[ServerError], str]] = {
    4001: (CreditsExhausted, "credits exhausted"),
    4002: (SessionTimeout, "session time limit reached"),
    4003: (ConcurrencyLimit, "concurrent session limit reached"),
    4010: (AuthenticationFailed, "authentication failed"),
    4503: (UpstreamUnavailable, "upstream motion service unavailable"),
}

_HTTP_STATUS_ERRORS: dict[int, type[ServerError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    402: CreditsExhausted,
    429: ConcurrencyLimit,
    502: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamUnavailable,
}

# WebSocket close codes that say the server went away, broke or is busy, rather than
# refusing what we sent (1002 protocol error, 1008 policy violation, ...).
_TRANSIENT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


def error_for_code(code: int | str | None, detail: str = "", *, context: str) -> AvatarKitError:
    """The named error for a motion-server close code or ``ServerError`` code."""
    try:
        num = int(code) if code is not None else None
    except (TypeError, ValueError):
        num = None
    text = (detail or "").strip()
    if num in CLOSE_CODE_ERRORS:
        cls, meaning = CLOSE_CODE_ERRORS[num]
        message = f"{context}: {meaning} (code {num}{': ' + text if text else ''})"
        return cls(message, code=num)
    lowered = text.lower()
    # The vendor's servers say these in words as well as (or instead of) codes.
    if "credits exhausted" in lowered:
        return CreditsExhausted(f"{context}: {text} (code {code})", code=code)
    if "session time limit" in lowered or "maximum session duration" in lowered:
        return SessionTimeout(f"{context}: {text} (code {code})", code=code)
    if "token" in lowered and ("invalid" in lowered or "expired" in lowered or "empty" in lowered):
        return AuthenticationFailed(f"{context}: {text} (code {code})", code=code)
    if num in _TRANSIENT_CLOSE_CODES:
        # The server went away, restarted or broke: trying again may succeed.
        return ConnectionFailed(
            f"{context}: connection closed with code {num}{' (' + text + ')' if text else ''}",
            code=num,
        )
    return ServerError(
        f"{context}: {text or 'server error'}{f' (code {code})' if code not in (None, '') else ''}",
        code=code,
    )


def _error_details(body: str) -> str:
    """The human part of an error body: ``{"errors": [{"title", "detail"}]}``, a
    ``{"message"}`` object, or plain text."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return body.strip()[:200]
    if isinstance(doc, dict):
        errors = doc.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else doc
        parts = [str(first[k]) for k in ("title", "detail", "message", "error") if first.get(k)]
        return " - ".join(parts)
    return ""


def error_for_http_response(status: int, body: str, *, context: str) -> AvatarKitError:
    """The named error for an HTTP refusal (of the token endpoint, or of the
    WebSocket upgrade), with the body's title and detail in its message."""
    detail = _error_details(body)
    message = f"{context} (HTTP {status}){': ' + detail if detail else ''}"
    cls = _HTTP_STATUS_ERRORS.get(status)
    if cls is None and 400 <= status < 500 and ("token" in detail.lower() or "app id" in detail.lower()):
        cls = AuthenticationFailed  # a bad token, or a token of another application
    return (cls or ServerError)(message, code=status)

"""Credentials of the local motion server: API keys, session tokens, avatars.

HTTP-free: :class:`Auth` decides, the app turns its answers into HTTP
responses.  A refusal is a :class:`Refusal` (status, code, title, detail),
the fields of the ``{"errors": [...]}`` body the server SDK parses.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple

__all__ = ["MAX_TOKENS", "Auth", "Refusal", "error_body"]

#: Tokens remembered at once (the oldest are forgotten first).
MAX_TOKENS = 100_000


class Refusal(NamedTuple):
    """Why a request is refused: the HTTP status and the error body's fields."""

    status: int
    code: str
    title: str
    detail: str


def error_body(refusal: Refusal) -> dict:
    """The JSON error body of a refusal, in the shape the server SDK parses."""
    status, code, title, detail = refusal
    return {"errors": [{"status": str(status), "code": code, "title": title, "detail": detail}]}


@dataclass
class _Token:
    api_key: str
    app_id: str | None
    expire_at: float


class Auth:
    """Issues session tokens for API keys and checks the WebSocket upgrade's credentials.

    ``api_keys``: None accepts any non-empty key; otherwise the accepted keys, or
    a mapping from key to the app id its tokens are bound to (None: any app).
    ``avatars``: None accepts any avatar id; otherwise the known ids.
    """

    def __init__(
        self,
        api_keys: Mapping[str, str | None] | Iterable[str] | None = None,
        avatars: Iterable[str] | None = None,
        *,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        if api_keys is None:
            self._api_keys: dict[str, str | None] | None = None
        elif isinstance(api_keys, Mapping):
            self._api_keys = dict(api_keys)
        else:
            self._api_keys = {key: None for key in api_keys}
        self._avatars = None if avatars is None else frozenset(avatars)
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        self._max_tokens = max_tokens

    def issue(self, api_key: str, body: Any) -> str | Refusal:
        """A new token for ``api_key`` and the parsed JSON ``body``
        (``{"expireAt": unix_seconds}``), or the refusal."""
        if not api_key:
            return Refusal(401, "unauthorized", "Unauthorized", "missing X-Api-Key header")
        if self._api_keys is not None and api_key not in self._api_keys:
            return Refusal(401, "unauthorized", "Unauthorized", "invalid API key")
        expire_at = body.get("expireAt") if isinstance(body, dict) else None
        if isinstance(expire_at, bool) or not isinstance(expire_at, (int, float)):
            return Refusal(
                400, "invalidRequest", "Bad Request",
                "expected a JSON body with an integer expireAt (unix seconds)",
            )
        if expire_at <= time.time():
            return Refusal(400, "invalidRequest", "Bad Request", "expireAt must be in the future")
        token = secrets.token_urlsafe(24)
        app_id = self._api_keys.get(api_key) if self._api_keys is not None else None
        self._tokens[token] = _Token(api_key, app_id, float(expire_at))
        while len(self._tokens) > self._max_tokens:
            self._tokens.popitem(last=False)
        return token

    def authorize(self, app_id: str, session_key: str, avatar_id: str) -> Refusal | None:
        """None if a WebSocket upgrade with these credentials may proceed, else the refusal."""
        if not session_key:
            return Refusal(401, "sessionTokenInvalid", "Unauthorized", "empty token")
        token = self._tokens.get(session_key)
        if token is None:
            return Refusal(401, "sessionTokenInvalid", "Unauthorized", "invalid session token")
        if token.expire_at <= time.time():
            return Refusal(401, "sessionTokenExpired", "Unauthorized", "session token expired")
        if not app_id:
            return Refusal(400, "invalidRequest", "Bad Request", "missing app id (X-App-ID header or appId parameter)")
        if token.app_id is not None and token.app_id != app_id:
            return Refusal(400, "appIDMismatch", "Bad Request", "app id mismatch")
        if not avatar_id:
            return Refusal(400, "invalidRequest", "Bad Request", "missing avatar id (query parameter id)")
        if self._avatars is not None and avatar_id not in self._avatars:
            return Refusal(404, "avatarNotFound", "Not Found", f"avatar not found: {avatar_id}")
        return None

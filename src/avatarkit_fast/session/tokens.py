"""The session-token exchange: ``POST {console}/session-tokens``.

For the server side of an application: it holds the API key and hands the
client a short-lived token, never the key.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from ..errors import ConnectionFailed, ProtocolError
from .failures import error_for_http_response

__all__ = ["DEFAULT_TOKEN_LIFETIME", "SESSION_TOKEN_PATH", "fetch_session_token"]

SESSION_TOKEN_PATH = "/session-tokens"
DEFAULT_TOKEN_LIFETIME = timedelta(hours=1)


async def fetch_session_token(
    console_endpoint_url: str,
    api_key: str,
    *,
    expire_at: datetime | float | int | None = None,
    timeout: float = 10.0,
) -> str:
    """Exchange an API key for a session token: ``POST {console}/session-tokens``.

    For the server side of an application; hand the token (never the key) to the
    client. ``expire_at`` is a datetime or a Unix time in seconds (default: one hour
    from now). Raises :class:`AuthenticationFailed` for a refused key, another
    :class:`ServerError` for other refusals, :class:`ConnectionFailed` if the
    console cannot be reached.  The HTTP call runs in a worker thread, so the
    event loop goes on meanwhile.
    """
    if not api_key:
        raise ValueError("api_key is required")
    if expire_at is None:
        expire_at = datetime.now(timezone.utc) + DEFAULT_TOKEN_LIFETIME
    if isinstance(expire_at, datetime):
        if expire_at.tzinfo is None:
            expire_at = expire_at.replace(tzinfo=timezone.utc)
        expire_seconds = int(expire_at.timestamp())
    else:
        expire_seconds = int(expire_at)
    endpoint = console_endpoint_url.rstrip("/") + SESSION_TOKEN_PATH
    if urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError(f"console_endpoint_url must be http:// or https://, got {console_endpoint_url!r}")
    return await asyncio.to_thread(_post_session_token, endpoint, api_key, expire_seconds, timeout)


def _post_session_token(endpoint: str, api_key: str, expire_at: int, timeout: float) -> str:
    import urllib.error  # here, not at the top: only the server side of an app needs it
    import urllib.request

    request = urllib.request.Request(
        endpoint,
        data=json.dumps({"expireAt": expire_at}).encode(),
        headers={"X-Api-Key": api_key, "Content-Type": "application/json"},
        method="POST",
    )
    context = f"session token request to {endpoint} refused"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise error_for_http_response(exc.code, exc.read().decode("utf-8", "replace"), context=context) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionFailed(f"cannot reach the console at {endpoint}: {exc}") from exc
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProtocolError(f"session token response from {endpoint} is not JSON: {body[:200]!r}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"session token response from {endpoint} is not a JSON object")
    if doc.get("errors"):
        raise error_for_http_response(status, body, context=context)
    token = doc.get("sessionToken")
    if not isinstance(token, str) or not token:
        raise ProtocolError(f"session token response from {endpoint} has no sessionToken")
    return token

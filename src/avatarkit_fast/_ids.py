"""The one id generator: request and connection ids in the service's form.

The motion service and its SDKs name requests and connections
``YYYYmmddHHMMSS_`` (UTC) followed by 12 nanoid characters, e.g.
``20251223101500_V1StGXR8_Z5j``; the client, the relay and the local server
all make theirs here, so they look alike in logs and on the wire.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

__all__ = ["ID_ALPHABET", "new_id"]

#: nanoid's URL-safe alphabet (64 characters: 72 bits of randomness in 12).
ID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def new_id() -> str:
    """A fresh id: the UTC second, ``_`` and 12 random characters (``secrets``)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    return stamp + "_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(12))

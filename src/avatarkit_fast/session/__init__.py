"""SDK mode: the client drives the AvatarKit motion server itself.

- :class:`MotionConnection` (:mod:`~avatarkit_fast.session.connection`): the
  driving protocol alone: connect and handshake, audio up
  (``send_audio(pcm, end) -> req_id``), ``interrupt()``, every animation
  envelope down to ``on_envelope(envelope, req_id, end)``, connection state
  events, close codes as named errors.  No controller: the piece a relay
  backend or a framework adapter stands on.
- :class:`AvatarSession` (:mod:`~avatarkit_fast.session.avatar`): a
  ``MotionConnection`` plus the map from request ids to an
  :class:`~avatarkit_fast.AvatarController`'s conversations: audio sent up is
  yielded to the controller, animation comes back into it.
- :func:`fetch_session_token` (:mod:`~avatarkit_fast.session.tokens`): for the
  server side of an application, the API key exchanged for a short-lived
  session token at the console endpoint.
- :mod:`~avatarkit_fast.session.failures`: close codes and HTTP refusals
  mapped to the package's named errors.
"""

from .avatar import AvatarSession
from .connection import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    INGRESS_WEBSOCKET_PATH,
    ConnectionState,
    MotionConnection,
    ingress_websocket_url,
    new_req_id,
)
from .failures import CLOSE_CODE_ERRORS, error_for_code
from .tokens import DEFAULT_TOKEN_LIFETIME, SESSION_TOKEN_PATH, fetch_session_token

__all__ = [
    "CLOSE_CODE_ERRORS",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_TOKEN_LIFETIME",
    "INGRESS_WEBSOCKET_PATH",
    "SESSION_TOKEN_PATH",
    "AvatarSession",
    "ConnectionState",
    "MotionConnection",
    "error_for_code",
    "fetch_session_token",
    "ingress_websocket_url",
    "new_req_id",
]

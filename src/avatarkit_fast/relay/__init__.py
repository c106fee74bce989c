"""The relay: the hop from the backend to the client, in msgpack frames.

In host mode the backend holds the server-SDK session; the client holds the
:class:`~avatarkit_fast.AvatarController`.  The backend forwards the speech
audio it sends to the motion server and the animation envelopes it gets back;
:class:`RelaySender` writes them as frames to any transport, and
:class:`RelayReceiver` feeds frames into a controller.

The package has one module per job:

- :mod:`~avatarkit_fast.relay.frames`: the frame format (versions 1 and 2),
  :func:`encode_frame` and :func:`decode_frame`;
- :mod:`~avatarkit_fast.relay.sender`: :class:`RelaySender`;
- :mod:`~avatarkit_fast.relay.receiver`: :class:`RelayReceiver` (sequencing,
  the reorder window, gaps);
- :mod:`~avatarkit_fast.relay.websocket`: :class:`WebSocketSink` and
  :func:`pump_websocket`;
- :mod:`~avatarkit_fast.relay.webrtc`: :class:`DataChannelSink` and
  :func:`pump_datachannel` over an aiortc data channel (extra ``[webrtc]``;
  imported from there, so that this package does not need aiortc).

Every public name but those of ``webrtc`` is importable from ``avatarkit_fast.relay`` itself.
"""

from .frames import (
    ANIMATION,
    AUDIO,
    AUDIO_ONLY,
    INTERRUPT,
    MAX_ENVELOPES_PER_FRAME,
    MAX_FRAME_BYTES,
    RELAY_VERSION,
    SEQ_LIMIT,
    SUPPORTED_VERSIONS,
    AnimationFrame,
    AudioChunk,
    AudioOnly,
    Interrupt,
    RelayFrame,
    decode_frame,
    encode_frame,
)
from .receiver import Controller, ReceiverStats, RelayReceiver
from .sender import RelaySender, Sink
from .websocket import WebSocketSink, pump_websocket

__all__ = [
    "AUDIO",
    "ANIMATION",
    "AUDIO_ONLY",
    "INTERRUPT",
    "MAX_ENVELOPES_PER_FRAME",
    "RELAY_VERSION",
    "SEQ_LIMIT",
    "SUPPORTED_VERSIONS",
    "AnimationFrame",
    "AudioChunk",
    "AudioOnly",
    "Interrupt",
    "RelayFrame",
    "ReceiverStats",
    "RelayReceiver",
    "RelaySender",
    "WebSocketSink",
    "decode_frame",
    "encode_frame",
    "pump_websocket",
]

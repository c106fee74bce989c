"""Support for avatarkit_fast's own tests and benchmarks (reference codecs,
fixtures).  The runtime layers never import it; the command line reads its
input recordings with :func:`parse_recording`.

:func:`load_recording` reads a recorded utterance (audio and envelopes, the
JSON layout of the AvatarKit demos); ``protoref`` is the ``protobuf``
reference codec the wire codec is compared against.
"""

from .recording import Recording, RecordingError, load_recording, parse_recording, save_recording

__all__ = ["Recording", "RecordingError", "load_recording", "parse_recording", "save_recording"]

"""Recordings of one host-mode utterance: the audio the server SDK sent and the
animation envelopes it handed back, as one JSON file.

The layout is the one the AvatarKit demos publish (and the project's own
``tests/data/golden-16k.json`` follows)::

    {"sample_rate": 16000, "audio_format": "pcm_s16le_mono",
     "audio_base64": "...", "connection_id": "...", "req_id": "...",
     "animation_messages_base64": ["...", ...]}

:func:`load_recording` is the one reader of that layout for the tests, the
benchmarks, the fuzz seeds and the scripts.  A file that is not such a
recording raises :class:`RecordingError`, whose message starts with the file
and, for an envelope, its index in ``animation_messages_base64`` (counted from
0, as the list is): ``rec.json: animation message 2: not base64``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union

from ..errors import DecodeError

__all__ = ["Recording", "RecordingError", "load_recording", "parse_recording", "save_recording"]

#: The only audio layout a recording holds: PCM, signed 16-bit little-endian, mono.
AUDIO_FORMAT = "pcm_s16le_mono"

PathLike = Union[str, "os.PathLike[str]"]


class RecordingError(DecodeError):
    """A file is not a readable recording.

    ``path`` is the file; ``message_index`` the index of the envelope that is
    wrong in ``animation_messages_base64``, or None when the fault is elsewhere.
    An unreadable file (missing, a directory, no permission) is one too, with
    the ``OSError`` as its ``__cause__``.
    """

    def __init__(self, path: PathLike, detail: str, message_index: int | None = None) -> None:
        where = f"{os.fspath(path)}: "
        if message_index is not None:
            where += f"animation message {message_index}: "
        super().__init__(where + detail)
        self.path = os.fspath(path)
        self.message_index = message_index
        self.detail = detail


@dataclass(frozen=True)
class Recording:
    """One utterance: ``pcm`` (raw s16le mono bytes at ``sample_rate``) and the
    animation ``envelopes`` (serialized ``message.Message`` bytes, in arrival
    order), with the server's ids."""

    sample_rate: int
    pcm: bytes
    envelopes: list[bytes]
    req_id: str = ""
    connection_id: str = ""
    audio_format: str = AUDIO_FORMAT
    path: str | None = field(default=None, compare=False)

    @property
    def seconds(self) -> float:
        """Duration of the audio."""
        return len(self.pcm) / 2 / self.sample_rate

    def to_json(self) -> dict[str, Any]:
        """The recording in its published JSON layout (what :func:`save_recording` writes)."""
        return {
            "sample_rate": self.sample_rate,
            "audio_format": self.audio_format,
            "audio_base64": base64.b64encode(self.pcm).decode("ascii"),
            "connection_id": self.connection_id,
            "req_id": self.req_id,
            "animation_messages_base64": [base64.b64encode(e).decode("ascii") for e in self.envelopes],
        }


def _b64(path: PathLike, value: Any, what: str, index: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise RecordingError(path, f"{what}not base64 (a JSON {type(value).__name__})", index)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RecordingError(path, f"{what}not base64", index) from None


def load_recording(path: PathLike, *, check_envelopes: bool = True) -> Recording:
    """Reads a recording (see :func:`parse_recording`); a file that cannot be
    read (missing, a directory, no permission) or is not JSON is a
    :class:`RecordingError` too."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise RecordingError(path, f"cannot read ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordingError(path, f"not a recording (not JSON: {exc})") from None
    return parse_recording(doc, path, check_envelopes=check_envelopes)


def parse_recording(doc: Any, path: PathLike, *, check_envelopes: bool = True) -> Recording:
    """The recording in ``doc`` (the JSON read from ``path``), checked whole
    before it returns; the one reader of the layout, for the command line as
    for the tests, the benchmarks, the fuzz seeds and the scripts.

    Required keys: ``sample_rate`` (one the controller takes), ``audio_base64``
    (an even number of bytes) and ``animation_messages_base64`` (a list);
    ``audio_format``, when present, must be ``pcm_s16le_mono``; ``req_id`` and
    ``connection_id``, when present, strings (absent: empty).  With
    ``check_envelopes`` (the default) every envelope must be a valid animation
    envelope (``wire.peek_animation``), so a caller never meets a bad one
    half-way through a run.  Raises :class:`RecordingError` otherwise.
    """
    from .._schema import SAMPLE_RATES

    if not isinstance(doc, dict):
        raise RecordingError(path, f"not a recording (a JSON {type(doc).__name__}, not an object)")
    for key in ("sample_rate", "audio_base64", "animation_messages_base64"):
        if key not in doc:
            raise RecordingError(path, f"not a recording: no {key!r}")

    rate = doc["sample_rate"]
    if type(rate) is not int:
        raise RecordingError(path, f"sample_rate: expected a whole number of Hz, found {rate!r}"[:200])
    if rate not in SAMPLE_RATES:
        raise RecordingError(
            path, f"sample_rate: {rate} Hz is not supported (use one of {', '.join(map(str, SAMPLE_RATES))})")
    audio_format = doc.get("audio_format", AUDIO_FORMAT)
    if audio_format != AUDIO_FORMAT:
        raise RecordingError(path, f"audio_format: {audio_format!r} is not supported (expected {AUDIO_FORMAT!r})")
    ids = {}
    for key in ("req_id", "connection_id"):
        value = doc.get(key, "")
        if not isinstance(value, str):
            raise RecordingError(path, f"{key}: expected a string, found a JSON {type(value).__name__}")
        ids[key] = value

    pcm = _b64(path, doc["audio_base64"], "audio_base64: ")
    if len(pcm) % 2:
        raise RecordingError(path, f"audio_base64: {len(pcm)} bytes, not 16-bit PCM (an odd count)")

    messages = doc["animation_messages_base64"]
    if not isinstance(messages, list):
        raise RecordingError(
            path, f"animation_messages_base64: expected a list, found a JSON {type(messages).__name__}")
    envelopes = [_b64(path, m, "", i) for i, m in enumerate(messages)]
    if check_envelopes:
        _check_envelopes(path, envelopes)
    return Recording(sample_rate=rate, pcm=pcm, envelopes=envelopes, audio_format=audio_format,
                     path=os.fspath(path), **ids)


def _check_envelopes(path: PathLike, envelopes: Sequence[bytes]) -> None:
    from .. import wire

    for i, env in enumerate(envelopes):
        try:
            head = wire.peek_animation(env)
        except DecodeError as exc:
            raise RecordingError(path, f"not an AvatarKit envelope ({exc})", i) from None
        if head.type != wire.MessageType.SERVER_RESPONSE_ANIMATION:
            raise RecordingError(path, f"not an animation envelope (message type {int(head.type)})", i)


def save_recording(path: PathLike, recording: Recording) -> Path:
    """Writes ``recording`` in the published layout, one key per line; returns the path."""
    p = Path(path)
    doc = recording.to_json()
    # One key per line and each base64 string whole: small diffs, still plain JSON.
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items())
    p.write_text("{\n" + body + "\n}\n")
    return p

"""Reading the command line's input files, every error in one form.

An error names the file first, then the part of it that is wrong, then what
is wrong: ``FILE: animation message 2: not base64``,
``FILE: sample_rate: 11025 Hz is not supported (...)``.  The codec's own
detail, where there is one, comes last in brackets.  All of them are
:class:`~avatarkit_fast.cli.UsageError` (one line, exit status 2).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import UsageError

__all__ = ["Recording", "SAMPLE_RATES", "NOT_ANY_INPUT", "cannot_read", "read_bytes", "parse_recording",
           "read_recording", "decode_envelope", "b64"]

# The rates the controller takes.
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

NOT_ANY_INPUT = "not an AvatarKit envelope, a recording (JSON), a keyframes .npy, a WAV or a demo report"


@dataclass
class Recording:
    """A recorded utterance: its audio (int16 mono PCM bytes) and animation envelopes."""

    sample_rate: int
    audio: bytes
    envelopes: list[bytes]
    doc: dict


def cannot_read(path: Path, exc: OSError) -> UsageError:
    """The error for a file that cannot be opened or read."""
    if path.is_dir():
        return UsageError(f"{path}: is a folder, not a file")
    return UsageError(f"{path}: cannot read it ({exc.strerror or exc})")


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a folder or an unreadable file is a :class:`UsageError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise cannot_read(path, exc) from None


def b64(value: Any, where: str) -> bytes:
    """Strict base64 (``where`` names the part in the error)."""
    if not isinstance(value, (str, bytes)):
        raise UsageError(f"{where}: not base64 (a JSON {type(value).__name__})")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{where}: not base64") from None


def decode_envelope(data: bytes, where: str):
    """The decoded envelope, or a :class:`UsageError` saying ``where`` it was."""
    from .. import wire
    from ..errors import DecodeError

    try:
        return wire.decode_message(data)
    except DecodeError as exc:
        raise UsageError(f"{where}: not an AvatarKit envelope ({exc})") from None


def parse_recording(doc: Any, path: Path) -> Recording:
    """The recording in ``doc`` (the vendor's JSON layout: ``sample_rate``,
    ``audio_base64``, ``animation_messages_base64``), its fields checked; the
    envelopes are base64-decoded, not parsed (see :func:`decode_envelope`)."""
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: not a recording (a JSON {type(doc).__name__}, not an object)")
    for key in ("sample_rate", "audio_base64", "animation_messages_base64"):
        if key not in doc:
            raise UsageError(f"{path}: not a recording: no {key!r}")
    rate = doc["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise UsageError(f"{path}: sample_rate: expected a whole number of Hz, found {rate!r}"[:200])
    if rate not in SAMPLE_RATES:
        raise UsageError(f"{path}: sample_rate: {rate} Hz is not supported "
                         f"(use one of {', '.join(map(str, SAMPLE_RATES))})")
    audio = b64(doc["audio_base64"], f"{path}: audio_base64")
    if len(audio) % 2:
        raise UsageError(f"{path}: audio_base64: {len(audio)} bytes, not 16-bit PCM (an odd count)")
    messages = doc["animation_messages_base64"]
    if not isinstance(messages, list):
        raise UsageError(f"{path}: animation_messages_base64: expected a list, found a JSON "
                         f"{type(messages).__name__}")
    envelopes = [b64(m, f"{path}: animation message {i}") for i, m in enumerate(messages)]
    return Recording(rate, audio, envelopes, doc)


def read_recording(path: Path) -> Recording:
    """Read and check a recording file."""
    data = read_bytes(path)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a recording (not JSON: {exc})") from None
    return parse_recording(doc, path)

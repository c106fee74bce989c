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
from pathlib import Path
from typing import Any

from .._schema import SAMPLE_RATES
from ..testing import Recording
from . import UsageError

__all__ = ["Recording", "SAMPLE_RATES", "NOT_ANY_INPUT", "cannot_read", "read_bytes", "parse_recording",
           "read_recording", "decode_envelope", "b64"]

NOT_ANY_INPUT = "not an AvatarKit envelope, a recording (JSON), a keyframes .npy, a WAV or a demo report"


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
    """The recording in ``doc`` (the vendor's JSON layout), read by the package's
    one reader (:func:`avatarkit_fast.testing.parse_recording`): every field and
    envelope checked, each fault a :class:`UsageError` in its form."""
    from ..testing import RecordingError
    from ..testing import parse_recording as parse

    try:
        return parse(doc, path)
    except RecordingError as exc:
        raise UsageError(str(exc)) from None


def read_recording(path: Path) -> Recording:
    """Read and check a recording file."""
    data = read_bytes(path)
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a recording (not JSON: {exc})") from None
    return parse_recording(doc, path)

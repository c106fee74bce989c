"""What the demo plays: made-up speech, a WAV file or a recorded utterance."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .. import UsageError

__all__ = ["Utterance", "load_input", "SAMPLE_RATES"]

SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


@dataclass
class Utterance:
    pcm: np.ndarray  # int16 mono
    sample_rate: int
    source: str
    envelopes: Optional[list[bytes]] = None  # a recording's own animation
    req_id: Optional[str] = None


def load_input(args) -> Utterance:
    from ... import wire

    if args.recording:
        path = Path(args.recording)
        try:
            doc = json.loads(path.read_text())
            rate = int(doc["sample_rate"])
            pcm = np.frombuffer(base64.b64decode(doc["audio_base64"]), "<i2").copy()
            envs = [base64.b64decode(e) for e in doc["animation_messages_base64"]]
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path}: not a recording (sample_rate, audio_base64, "
                             f"animation_messages_base64): {exc!s}") from None
        req_ids = set()
        for i, env in enumerate(envs):
            try:
                msg = wire.decode_message(env)
            except Exception as exc:  # noqa: BLE001 - any decode failure is a bad input
                raise UsageError(f"{path}: animation message {i} does not decode: {exc}") from None
            req_ids.add(getattr(msg, "req_id", ""))
        if len(req_ids) != 1 or not next(iter(req_ids)):
            raise UsageError(f"{path}: expected the envelopes of one request, found req_ids {sorted(req_ids)}")
        return Utterance(pcm, rate, str(path), envs, req_ids.pop())
    if args.audio:
        from ..wavfile import read_wav

        path = Path(args.audio)
        if not path.is_file():
            raise UsageError(f"cannot read {path}: no such file")
        try:
            pcm, rate = read_wav(path)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if rate not in SAMPLE_RATES:
            raise UsageError(f"{path}: sample rate {rate} Hz is not supported (use one of "
                             f"{', '.join(map(str, SAMPLE_RATES))})")
        if len(pcm) == 0:
            raise UsageError(f"{path}: no audio in the file")
        return Utterance(pcm, rate, str(path))
    from ..speech import synthesize_speech

    if not (0.2 <= args.seconds <= 600):
        raise UsageError(f"--seconds must be between 0.2 and 600, got {args.seconds:g}")
    return Utterance(synthesize_speech(args.seconds, 16000, seed=args.seed), 16000,
                     f"made-up speech, {args.seconds:g} s, seed {args.seed}")

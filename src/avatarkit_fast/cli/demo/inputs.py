"""What the demo plays: made-up speech, a WAV file or a recorded utterance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .. import UsageError
from ... import wire
from ..inputfiles import SAMPLE_RATES, cannot_read, read_recording

__all__ = ["Utterance", "load_input", "SAMPLE_RATES"]

MAX_INPUT_SECONDS = 600.0  # as --seconds


@dataclass
class Utterance:
    pcm: np.ndarray  # int16 mono
    sample_rate: int
    source: str
    envelopes: Optional[list[bytes]] = None  # a recording's own animation
    req_id: Optional[str] = None


def load_input(args) -> Utterance:
    """The utterance the options name; :class:`UsageError` for a bad input file,
    whose message names the file (and, for a recording, the message index)."""
    if args.recording:
        path = Path(args.recording)
        rec = read_recording(path)
        pcm = np.frombuffer(rec.pcm, "<i2").copy()
        _check_audio(path, pcm, rec.sample_rate)
        req_ids = set()
        for env in rec.envelopes:  # each checked by the reader: its header is enough
            req_ids.add(wire.peek_animation(env).req_id)
        if len(req_ids) != 1 or not next(iter(req_ids)):
            raise UsageError(f"{path}: expected the envelopes of one request, found req_ids {sorted(req_ids)}")
        return Utterance(pcm, rec.sample_rate, str(path), rec.envelopes, req_ids.pop())
    if args.audio:
        from ..wavfile import read_wav

        path = Path(args.audio)
        try:
            pcm, rate = read_wav(path)
        except OSError as exc:
            raise cannot_read(path, exc) from None
        except ValueError as exc:  # read_wav's message names the file
            raise UsageError(str(exc)) from None
        if rate not in SAMPLE_RATES:
            raise UsageError(f"{path}: sample rate {rate} Hz is not supported (use one of "
                             f"{', '.join(map(str, SAMPLE_RATES))})")
        _check_audio(path, pcm, rate)
        return Utterance(pcm, rate, str(path))
    from ..speech import synthesize_speech

    return Utterance(synthesize_speech(args.seconds, 16000, seed=args.seed), 16000,
                     f"made-up speech, {args.seconds:g} s, seed {args.seed}")


def _check_audio(path: Path, pcm: np.ndarray, rate: int) -> None:
    # The same bound as --seconds: no input makes a run that looks like a hang.
    if len(pcm) == 0:
        raise UsageError(f"{path}: no audio in the file")
    if len(pcm) > MAX_INPUT_SECONDS * rate:
        raise UsageError(f"{path}: {len(pcm) / rate:.0f} s of audio, more than the demo's "
                         f"{MAX_INPUT_SECONDS:g} s")

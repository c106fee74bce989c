"""What the demo plays: made-up speech, an audio file or a recorded utterance."""

from __future__ import annotations

import sys
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
        return _read_audio(Path(args.audio), quiet=bool(getattr(args, "quiet", False)))
    from ..speech import synthesize_speech

    return Utterance(synthesize_speech(args.seconds, 16000, seed=args.seed), 16000,
                     f"made-up speech, {args.seconds:g} s, seed {args.seed}")


def _read_audio(path: Path, *, quiet: bool) -> Utterance:
    """An audio file through ``soundfile`` (WAV of any PCM width or float,
    FLAC, Ogg, ...): mixed down to mono, and resampled to 16 kHz when its rate
    is not one a controller plays at (played as it is otherwise).  What was
    done to it is said in one line (unless ``quiet``)."""
    from ...audio import AudioFileError, read_audio_file

    try:
        with open(path, "rb"):  # the CLI's own words for a missing file or a folder
            pass
    except OSError as exc:
        raise cannot_read(path, exc) from None
    try:
        import soundfile as sf

        info = sf.info(str(path))
        rate = int(info.samplerate)
    except Exception:  # read_audio_file says what is wrong, naming the file
        rate = 16000
    target = rate if rate in SAMPLE_RATES else 16000
    try:
        pcm, found = read_audio_file(path, target_rate=target)
    except AudioFileError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise cannot_read(path, exc) from None
    if not quiet and (found.downmixed or found.resampled or found.samples_clipped):
        print(found.describe(), file=sys.stderr)
    _check_audio(path, pcm, found.rate)
    return Utterance(pcm, found.rate, str(path))


def _check_audio(path: Path, pcm: np.ndarray, rate: int) -> None:
    # The same bound as --seconds: no input makes a run that looks like a hang.
    if len(pcm) == 0:
        raise UsageError(f"{path}: no audio in the file")
    if len(pcm) > MAX_INPUT_SECONDS * rate:
        raise UsageError(f"{path}: {len(pcm) / rate:.0f} s of audio, more than the demo's "
                         f"{MAX_INPUT_SECONDS:g} s")

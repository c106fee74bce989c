"""Audio files through ``soundfile`` (libsndfile, bundled in its wheels).

:func:`read_audio_file` reads what libsndfile reads (WAV of any PCM width,
24-bit and ``WAVE_FORMAT_EXTENSIBLE`` included, float WAV, FLAC, Ogg Vorbis
and Opus, AIFF, ...) as mono int16 at the rate asked for: channels are mixed
down (their mean), another rate is resampled (soxr, high quality), and the
:class:`AudioFileInfo` returned says what was done, for a line on the
command line.  Samples go through float64 (exact for every PCM width) and
become int16 by the rule of float input (:func:`~.pcm.as_pcm16`), so a
16-bit mono file at the rate asked for comes back bit for bit.

A file shorter than its header claims is an error naming both lengths.
libsndfile itself reads such a file without complaint, up to where the data
stops; it only notes the difference in its log (``sf_command(...,
SFC_GET_LOG_INFO)``, ``soundfile.info(path).extra_info``) as a line
``data : <declared> (should be <present>)``, which is what is checked here.
A FLAC file cut short fails to decode to its declared frame count, and is
reported the same way.  (An Ogg file declares no length: a truncated one
reads as what it holds.)

Every failure is an :class:`AudioFileError` naming the file: missing, a
directory, not audio, cut short, unreadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import AvatarKitError
from .pcm import AudioInputStats, as_pcm16
from .resample import MAX_RATE, MIN_RATE, _check_rate

__all__ = ["AudioFileError", "AudioFileInfo", "read_audio_file", "write_wav"]


class AudioFileError(AvatarKitError, ValueError):
    """An audio file cannot be read or written; the message names the file
    (``path``) and what is wrong."""

    def __init__(self, message: str, path: Any = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class AudioFileInfo:
    """What :func:`read_audio_file` found and did."""

    path: str
    format: str  # libsndfile's major format, e.g. "WAV", "FLAC", "OGG"
    subtype: str  # e.g. "PCM_16", "PCM_24", "FLOAT", "VORBIS"
    sample_rate: int  # of the file
    channels: int  # of the file
    frames: int  # of the file
    rate: int  # of the samples returned
    samples: int  # returned
    downmixed: bool
    resampled: bool
    samples_clipped: int  # float samples outside [-1, 1], limited

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def describe(self) -> str:
        """One line: the file, and what was done to it."""
        done = []
        if self.downmixed:
            done.append(f"mixed down from {self.channels} channels to mono")
        if self.resampled:
            done.append(f"resampled from {self.sample_rate} to {self.rate} Hz")
        if self.samples_clipped:
            done.append(f"{self.samples_clipped} samples clipped")
        return (
            f"{self.path}: {self.format} {self.subtype}, {self.channels} channel"
            f"{'s' if self.channels != 1 else ''} at {self.sample_rate} Hz, {self.duration:.2f} s"
            + (f": {', '.join(done)}" if done else "")
        )


_DATA_LOG = re.compile(r"^\s*data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioFileError(f"{path}: no such file", path)
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory, not an audio file", path)


def read_audio_file(path: Any, *, target_rate: Optional[int]) -> tuple[np.ndarray, AudioFileInfo]:
    """The samples of the audio file at ``path`` as mono int16 at
    ``target_rate`` (8000..96000 Hz; None keeps the file's rate), and what was
    found and done (:class:`AudioFileInfo`).  Raises AudioFileError."""
    import soundfile as sf

    if target_rate is not None:
        target_rate = _check_rate("target_rate", target_rate)
    p = Path(path)
    _check_path(p)
    try:
        info = sf.info(str(p))
    except (sf.SoundFileError, RuntimeError) as exc:
        reason = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        raise AudioFileError(
            f"{p}: not an audio file that libsndfile reads (WAV, FLAC, Ogg, AIFF, ...): {reason}", p
        ) from None
    except OSError as exc:
        raise AudioFileError(f"{p}: cannot be read: {exc.strerror or exc}", p) from None
    short = _DATA_LOG.search(info.extra_info or "")
    if short and int(short.group(1)) > int(short.group(2)):
        declared, present = int(short.group(1)), int(short.group(2))
        block = _block_align(info)
        raise AudioFileError(
            f"{p}: the file is shorter than its header says: {present // block} of "
            f"{declared // block} frames present ({present} of {declared} data bytes): truncated?",
            p,
        )
    try:
        data, rate = sf.read(str(p), dtype="float64", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        got = _frames_readable(sf, p)
        raise AudioFileError(
            f"{p}: the file is shorter than its header says or damaged: {got} of "
            f"{info.frames} frames decode ({str(exc).strip()})",
            p,
        ) from None
    if data.shape[0] < info.frames:
        raise AudioFileError(
            f"{p}: the file is shorter than its header says: {data.shape[0]} of "
            f"{info.frames} frames present: truncated?",
            p,
        )
    if rate <= 0:
        raise AudioFileError(f"{p}: sample rate {rate} Hz", p)
    channels = data.shape[1]
    mono = data[:, 0] if channels == 1 else data.mean(axis=1)
    out_rate = int(rate) if target_rate is None else target_rate
    resampled = out_rate != rate
    if resampled:
        if not MIN_RATE // 2 <= rate <= MAX_RATE * 4:
            raise AudioFileError(f"{p}: sample rate {rate} Hz cannot be resampled", p)
        import soxr

        mono = soxr.resample(mono, rate, out_rate, quality="HQ")
    stats = AudioInputStats()
    pcm = np.frombuffer(as_pcm16(np.ascontiguousarray(mono), what="samples", stats=stats), "<i2")
    return pcm.astype(np.int16), AudioFileInfo(
        path=str(p),
        format=info.format,
        subtype=info.subtype,
        sample_rate=int(rate),
        channels=int(channels),
        frames=int(info.frames),
        rate=out_rate,
        samples=int(pcm.size),
        downmixed=channels > 1,
        resampled=resampled,
        samples_clipped=stats.samples_clipped,
    )


def _frames_readable(sf: Any, p: Path) -> int:
    """How many frames decode before the error (for the message)."""
    got = 0
    try:
        with sf.SoundFile(str(p)) as f:
            while True:
                block = f.read(4096, dtype="int16")
                if not len(block):
                    break
                got += len(block)
    except (sf.SoundFileError, RuntimeError):
        pass
    return got


def _block_align(info: Any) -> int:
    m = re.search(r"Block Align\s*:\s*(\d+)", info.extra_info or "")
    if m and int(m.group(1)) > 0:
        return int(m.group(1))
    width = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
    return max(1, width.get(info.subtype, 2) * max(1, info.channels))


def write_wav(path: Any, pcm: Any, rate: int) -> None:
    """Write mono PCM (int16 samples, s16le bytes, or floats in [-1, 1]:
    whatever :func:`~.pcm.as_pcm16` takes) as a 16-bit PCM WAV file at
    ``rate`` Hz.  Raises AudioFileError if the file cannot be written."""
    import soundfile as sf

    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"rate must be a positive int (Hz), got {rate!r}")
    raw = as_pcm16(pcm, what="pcm")
    mv = memoryview(raw).cast("B")
    samples = np.frombuffer(mv[: len(mv) - len(mv) % 2], "<i2")
    p = Path(path)
    try:
        sf.write(str(p), samples, int(rate), subtype="PCM_16", format="WAV")
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioFileError(f"{p}: cannot be written: {exc}", p) from None

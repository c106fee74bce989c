"""WAV files with the standard library's ``wave``: mono int16 in and out."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

__all__ = ["read_wav", "write_wav"]


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono int16 ``samples`` as a 16-bit PCM WAV file."""
    data = np.ascontiguousarray(samples, dtype="<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(data.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file as mono int16 and its sample rate.

    8, 16, 24 and 32-bit integer PCM are accepted; channels are averaged.
    Raises ``ValueError`` (with the reason) for anything else.
    """
    try:
        with wave.open(str(path), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc or 'it ends too soon'})") from None
    if channels < 1:
        raise ValueError(f"{path}: not a PCM WAV file (no channels)")
    raw = raw[: len(raw) - len(raw) % (width * channels)]  # a truncated last frame
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.int32)
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        x = np.where(x >= 1 << 23, x - (1 << 24), x) >> 8
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16), rate

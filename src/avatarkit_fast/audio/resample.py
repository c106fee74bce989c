"""Streaming resampling of int16 PCM over ``soxr`` (libsoxr, from PyPI).

:class:`StreamResampler` keeps the filter state from chunk to chunk, so a
stream cut into chunks of any sizes (one sample, if need be) resamples to
exactly the samples of the same stream resampled in one call: measured equal
sample for sample (0 LSB), because the work is done in float32 (soxr's float
path is bit-exact whatever the chunking; its int16 path adds dither and is
not) and rounded to int16 once, by the same rule as float input
(:func:`avatarkit_fast.audio.as_pcm16`: ties to even, limited to int16, the
limited samples counted in ``samples_clipped``).

A stream of ``n`` samples at ``in_rate`` resamples to exactly
``floor(n * out_rate / in_rate + 1/2)`` samples once flushed
(:meth:`StreamResampler.expected_length`, checked against soxr over many
rates and lengths).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_RATE", "MIN_RATE", "QUALITIES", "StreamResampler"]

MIN_RATE = 8000
MAX_RATE = 96000
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _check_rate(name: str, rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"{name} must be an int (Hz), got {type(rate).__name__}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"{name} must be in {MIN_RATE}..{MAX_RATE} Hz, got {rate}")
    return int(rate)


def _to_int16(values: np.ndarray) -> tuple[np.ndarray, int]:
    # The rounding rule of float input, on int16-scaled floats.
    y = np.rint(values)
    over = int(np.count_nonzero((y > 32767.0) | (y < -32768.0)))
    if over:
        np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16), over


class StreamResampler:
    """Mono int16 PCM at ``in_rate`` to ``out_rate`` (both 8000..96000 Hz),
    streaming.

    :meth:`process` takes the next chunk and returns the samples it
    completes (an int16 array, maybe empty: the filter delays output by a
    few milliseconds); :meth:`flush` ends the stream and returns its tail;
    :meth:`reset` drops the stream (an interrupt).  After :meth:`flush` or
    :meth:`reset` the next :meth:`process` begins a new stream.
    ``quality``: soxr's ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"`` (default) or
    ``"VHQ"``.

    ``samples_in`` / ``samples_out``: whole samples taken and returned since
    construction; ``samples_clipped``: output samples limited to int16 (an
    overshoot of the filter on full-scale input).  When the rates are equal,
    nothing is resampled and :meth:`process` returns a view of its input (no
    copy).  One thread at a time.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        self.in_rate = _check_rate("in_rate", in_rate)
        self.out_rate = _check_rate("out_rate", out_rate)
        if not isinstance(quality, str) or quality.upper() not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
        self.quality = quality.upper()
        self.samples_in = 0
        self.samples_out = 0
        self.samples_clipped = 0
        self._carry = -1  # a dangling byte of s16le input, or -1
        self._stream: Any = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=self.quality
            )
        self._started = False  # the soxr stream has had input since the last clear
        self._stream_in = 0  # samples taken / returned by the stream in progress
        self._stream_out = 0

    @property
    def identity(self) -> bool:
        """True when the rates are equal: samples pass through unchanged."""
        return self._stream is None

    def expected_length(self, n_in: int) -> int:
        """The samples a stream of ``n_in`` input samples resamples to, once
        flushed: ``floor(n_in * out_rate / in_rate + 1/2)``."""
        return (2 * n_in * self.out_rate + self.in_rate) // (2 * self.in_rate)

    def most_out(self, n_in: int) -> int:
        """At most the samples that ``n_in`` more input samples make the
        stream in progress return, its flush included (so a caller can check
        room before :meth:`process`)."""
        return self.expected_length(self._stream_in + n_in) - self._stream_out

    def delay(self) -> float:
        """Output samples the filter holds back now (soxr's delay)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    def _samples(self, chunk: Any) -> np.ndarray:
        """The int16 samples of ``chunk`` (an int16 array, or s16le bytes of
        any length, an odd byte carried to the next call)."""
        if isinstance(chunk, np.ndarray) and chunk.dtype == np.int16:
            if chunk.ndim == 2 and chunk.shape[1] == 1:
                chunk = chunk[:, 0]
            if chunk.ndim != 1:
                raise ValueError(f"expected mono int16 samples of shape (n,) or (n, 1), got {chunk.shape}")
            if self._carry >= 0:
                raise ValueError(
                    "an int16 array after s16le bytes of odd length: half a sample is pending"
                )
            return chunk if chunk.dtype.isnative else chunk.astype(np.int16)
        try:
            mv = memoryview(chunk)
        except TypeError:
            raise TypeError(
                f"expected int16 samples or s16le bytes, got {type(chunk).__name__}"
            ) from None
        if not mv.c_contiguous:
            raise TypeError("expected a C-contiguous buffer of s16le bytes")
        raw = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        if self._carry >= 0 and len(raw):
            joined = bytes([self._carry]) + bytes(raw)
            self._carry = -1
            raw = memoryview(joined)
        if len(raw) % 2:
            self._carry = raw[-1]
            raw = raw[:-1]
        return np.frombuffer(raw, dtype="<i2")

    def process(self, chunk: Any) -> np.ndarray:
        """Resample the next chunk of the stream; returns the int16 samples
        it completes (a view of the input when the rates are equal)."""
        x = self._samples(chunk)
        self.samples_in += x.size
        if self._stream is None:
            self.samples_out += x.size
            return x
        self._stream_in += x.size
        if x.size == 0:
            return np.empty(0, np.int16)
        self._started = True
        y, clipped = _to_int16(self._stream.resample_chunk(x.astype(np.float32)))
        self.samples_clipped += clipped
        self.samples_out += y.size
        self._stream_out += y.size
        return y

    def flush(self) -> np.ndarray:
        """End the stream: the samples the filter still holds (int16); a
        dangling half sample is dropped.  The next :meth:`process` begins a
        new stream."""
        self._carry = -1
        self._stream_in = self._stream_out = 0
        if self._stream is None or not self._started:
            return np.empty(0, np.int16)
        tail = self._stream.resample_chunk(np.empty(0, np.float32), last=True)
        self._stream.clear()
        self._started = False
        y, clipped = _to_int16(tail)
        self.samples_clipped += clipped
        self.samples_out += y.size
        return y

    def reset(self) -> None:
        """Drop the stream and what the filter holds (an interrupt); the
        counters stay."""
        self._carry = -1
        self._stream_in = self._stream_out = 0
        if self._stream is not None and self._started:
            self._stream.clear()
        self._started = False

    def __repr__(self) -> str:
        return (
            f"<StreamResampler {self.in_rate} -> {self.out_rate} Hz {self.quality} "
            f"in={self.samples_in} out={self.samples_out}>"
        )

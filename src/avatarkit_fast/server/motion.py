"""Speech audio to FLAME keyframes: the animation of the local motion server.

Not a learned model: a small, deterministic signal chain that makes a mouth
visibly follow speech.  Every keyframe covers one window of
``sample_rate // fps`` samples (40 ms at 25 fps) and is computed from that
window and the state left by the windows before it, so the output depends only
on the audio of the request, never on how it was split into chunks or on wall
time.

Per window:

- loudness (RMS in dBFS, mapped to 0..1) opens the jaw (``jaw_pose`` pitch),
  through an attack/release smoother so the mouth snaps open and eases shut;
- the spectrum (centroid, low/mid/high band balance, spectral flux) drives the
  first expression coefficients: lips spread on bright vowels, round on dark
  ones, press on plosive onsets;
- blinks on ``eye_lid`` at pseudo-random but reproducible intervals;
- small head motion (``neck_pose``): slow sway plus a nod with speech energy.

Values stay within the ranges of the real service's output
(``jaw_pose`` pitch up to about 0.2 rad, expression coefficients within +-2).
"""

from __future__ import annotations

import math

import numpy as np

from .._schema import FLAME_OFFSETS, KEYFRAME_FLOATS
from .._schema import SAMPLE_RATES as SUPPORTED_SAMPLE_RATES

__all__ = ["KEYFRAME_FLOATS", "MotionSynth", "SUPPORTED_SAMPLE_RATES", "synthesize"]

# Offsets of the FLAME groups in a keyframe.
_NECK = FLAME_OFFSETS["neck_pose"]
_JAW = FLAME_OFFSETS["jaw_pose"]
_EYE_LID = FLAME_OFFSETS["eye_lid"]
_EXPR = FLAME_OFFSETS["expression"]

# Loudness mapping: -55 dBFS and below is a closed mouth, -12 dBFS fully open.
_DB_FLOOR = -55.0
_DB_SPAN = 43.0
# One-pole smoothing per 40 ms window: fast attack, slower release.
_ATTACK = 0.65
_RELEASE = 0.30
_SLOW = 0.08  # the head's slow follower of speech energy
_JAW_REST = 0.005
_JAW_RANGE = 0.20

# Blink: closure profile over consecutive keyframes (at 25 fps, 200 ms).
_BLINK = (0.35, 0.85, 1.0, 0.6, 0.2)
_BLINK_MIN_S = 2.2
_BLINK_SPREAD_S = 2.8

# Expression coefficients driven by the features, as fixed linear mixes:
# rows are coefficients 0..9, columns are features
# (open, brightness, low, high, flux, 1).  Chosen by eye for a plausible face.
_EXPR_MIX = np.array(
    [
        # open  bright   low    high   flux   bias
        [1.60, 0.20, 0.30, -0.10, 0.30, -0.40],
        [0.40, 1.20, -0.40, 0.30, 0.00, -0.30],
        [-0.30, -0.90, 0.80, -0.20, 0.00, 0.20],
        [0.80, -0.20, 0.50, 0.00, 0.40, -0.20],
        [0.00, 0.60, -0.30, 0.80, -0.20, -0.20],
        [0.30, 0.00, 0.00, 0.40, 0.90, -0.10],
        [-0.50, 0.40, 0.00, 0.30, 0.00, 0.10],
        [0.20, -0.60, 0.60, 0.00, 0.20, 0.00],
        [0.60, 0.30, 0.00, -0.40, 0.00, -0.20],
        [-0.20, 0.00, 0.40, 0.20, -0.50, 0.10],
    ],
    dtype=np.float64,
)


def _hash_unit(n: int) -> float:
    """A reproducible pseudo-random number in [0, 1) for integer ``n`` (splitmix64)."""
    z = (n * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


class MotionSynth:
    """Turns one request's PCM (s16le mono) into keyframes, window by window.

    ``push`` audio in any chunking (odd byte splits included), ``available``
    says how many whole windows wait, ``take(n)`` returns the next ``n``
    keyframes as a float32 ``(n, 120)`` array.  Same audio, same keyframes.
    """

    def __init__(self, sample_rate: int = 16000, fps: int = 25) -> None:
        if sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(
                f"unsupported sample rate {sample_rate}; expected one of {SUPPORTED_SAMPLE_RATES}"
            )
        if fps <= 0 or sample_rate % fps:
            raise ValueError(f"fps {fps} must divide the sample rate {sample_rate}")
        self.sample_rate = sample_rate
        self.fps = fps
        self.window = sample_rate // fps
        self._pending = bytearray()
        self._index = 0  # keyframes produced so far
        self._samples_in = 0
        self._open = 0.0
        self._slow = 0.0
        self._prev_spectrum: np.ndarray | None = None
        self._next_blink = self._blink_gap(0)
        self._blinks = 0
        freqs = np.fft.rfftfreq(self.window, 1.0 / sample_rate)
        self._freqs = freqs
        self._hann = np.hanning(self.window)
        nyquist = sample_rate / 2
        self._low = freqs < 500.0
        self._mid = (freqs >= 500.0) & (freqs < 2000.0)
        self._high = (freqs >= 2000.0) & (freqs < min(6000.0, nyquist))

    @property
    def samples_in(self) -> int:
        """Whole samples received so far."""
        return self._samples_in

    @property
    def produced(self) -> int:
        """Keyframes returned by ``take`` so far."""
        return self._index

    @property
    def available(self) -> int:
        """Whole windows received and not yet taken."""
        return len(self._pending) // (2 * self.window)

    def push(self, pcm: bytes | bytearray | memoryview) -> None:
        """Append PCM; a trailing half sample is kept for the next push."""
        before = len(self._pending) // 2
        self._pending += pcm
        self._samples_in += len(self._pending) // 2 - before

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` keyframes (``n <= available``)."""
        if n < 0 or n > self.available:
            raise ValueError(f"take({n}) with {self.available} windows available")
        out = np.zeros((n, KEYFRAME_FLOATS), dtype=np.float32)
        if n == 0:
            return out
        nbytes = n * self.window * 2
        samples = np.frombuffer(bytes(self._pending[:nbytes]), dtype="<i2")
        del self._pending[:nbytes]
        windows = samples.astype(np.float64).reshape(n, self.window) / 32768.0
        self._fill(windows, out)
        return out

    # -- the signal chain ---------------------------------------------------

    def _blink_gap(self, k: int) -> int:
        seconds = _BLINK_MIN_S + _BLINK_SPREAD_S * _hash_unit(k)
        return max(len(_BLINK) + 1, int(round(seconds * self.fps)))

    def _fill(self, windows: np.ndarray, out: np.ndarray) -> None:
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        db = 20.0 * np.log10(rms + 1e-9)
        loud = np.clip((db - _DB_FLOOR) / _DB_SPAN, 0.0, 1.0)

        spectrum = np.abs(np.fft.rfft(windows * self._hann, axis=1))
        power = spectrum * spectrum
        total = power.sum(axis=1) + 1e-12
        centroid = (power * self._freqs).sum(axis=1) / total
        bright = np.clip((centroid - 400.0) / 2600.0, 0.0, 1.0)
        low = power[:, self._low].sum(axis=1) / total
        high = power[:, self._high].sum(axis=1) / total
        # Flux: how much the normalised spectrum changed since the last window.
        norm = spectrum / (np.sqrt(total)[:, None])
        prev = self._prev_spectrum
        flux = np.empty(len(windows))
        for i in range(len(windows)):
            flux[i] = 0.0 if prev is None else float(np.sqrt(np.sum((norm[i] - prev) ** 2)))
            prev = norm[i]
        self._prev_spectrum = None if prev is None else prev.copy()
        flux = np.clip(flux * loud, 0.0, 1.0)

        fps = float(self.fps)
        for i in range(len(windows)):
            k = self._index
            target = float(loud[i])
            a = _ATTACK if target > self._open else _RELEASE
            self._open += a * (target - self._open)
            self._slow += _SLOW * (target - self._slow)
            openness = self._open
            speaking = min(1.0, openness * 2.0)

            row = out[i]
            t = k / fps
            # Head: slow sway on three axes, and a nod that follows speech energy.
            row[_NECK + 0] = 0.10 + 0.020 * math.sin(2 * math.pi * t / 3.7) + 0.035 * self._slow
            row[_NECK + 1] = 0.030 * math.sin(2 * math.pi * t / 5.3 + 1.0)
            row[_NECK + 2] = 0.012 * math.sin(2 * math.pi * t / 7.1 + 2.0)
            row[_JAW] = _JAW_REST + _JAW_RANGE * openness

            # Blinks at reproducible pseudo-random intervals.
            phase = k - self._next_blink
            if 0 <= phase < len(_BLINK):
                row[_EYE_LID] = row[_EYE_LID + 1] = _BLINK[phase]
                if phase == len(_BLINK) - 1:
                    self._blinks += 1
                    self._next_blink = k + self._blink_gap(self._blinks)

            features = np.array(
                [openness, float(bright[i]) * speaking, float(low[i]) * speaking,
                 float(high[i]) * speaking, float(flux[i]), 1.0]
            )
            row[_EXPR : _EXPR + len(_EXPR_MIX)] = np.clip(_EXPR_MIX @ features, -2.0, 2.0)
            self._index = k + 1


def synthesize(pcm: bytes, sample_rate: int = 16000, fps: int = 25) -> np.ndarray:
    """All keyframes for one whole utterance: ``floor(samples * fps / sample_rate)`` rows."""
    synth = MotionSynth(sample_rate, fps)
    synth.push(pcm)
    return synth.take(synth.available)

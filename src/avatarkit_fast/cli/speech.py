"""Speech-like audio the package makes itself: no downloads, no models.

Voiced syllables are a glottal harmonic series shaped by vowel formants, with
a falling pitch contour per phrase, consonant noise at onsets, and pauses
between words and phrases.  Deterministic for a given seed.  It is not
speech, but it has speech's rhythm and loudness, which is what drives a mouth.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthesize_speech"]

# (F1, F2, F3) in Hz for a few vowels, adult voice.
_VOWELS = (
    (730.0, 1090.0, 2440.0),  # a
    (530.0, 1840.0, 2480.0),  # e
    (270.0, 2290.0, 3010.0),  # i
    (570.0, 840.0, 2410.0),  # o
    (300.0, 870.0, 2240.0),  # u
)
_BANDWIDTHS = (90.0, 110.0, 170.0)
_FORMANT_GAINS = (1.0, 0.6, 0.3)


def _plan(rng: np.random.Generator, seconds: float):
    """Segments (kind, start_s, dur_s, vowel, f0_start, f0_end) filling ``seconds``."""
    segs = []
    t = 0.25  # a short lead-in of silence
    while t < seconds - 0.3:
        words = int(rng.integers(3, 7))
        f0_top = float(rng.uniform(170.0, 210.0))
        f0_bottom = f0_top * float(rng.uniform(0.62, 0.75))
        phrase_syll = [int(rng.integers(1, 4)) for _ in range(words)]
        total = sum(phrase_syll)
        k = 0
        for n in phrase_syll:
            for _ in range(n):
                if t >= seconds - 0.3:
                    break
                dur = float(rng.uniform(0.13, 0.24))
                a = f0_top + (f0_bottom - f0_top) * (k / total)
                b = f0_top + (f0_bottom - f0_top) * ((k + 1) / total)
                # A word stress rises then falls inside the syllable.
                segs.append(("syll", t, dur, int(rng.integers(0, len(_VOWELS))), a, b,
                             bool(rng.random() < 0.55)))
                t += dur
                k += 1
            t += float(rng.uniform(0.03, 0.09))  # between words
        t += float(rng.uniform(0.25, 0.45))  # between phrases
    return segs


def synthesize_speech(seconds: float = 3.0, sample_rate: int = 16000, *, seed: int = 7) -> np.ndarray:
    """``seconds`` of speech-like mono audio as int16 at ``sample_rate``.

    The same arguments always give the same samples.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    nyquist = sample_rate / 2.0
    for _kind, start, dur, vowel, f0a, f0b, onset in _plan(rng, seconds):
        i0 = int(start * sample_rate)
        m = min(int(dur * sample_rate), n - i0)
        if m <= 8:
            continue
        u = np.arange(m) / m
        # Pitch: linear glide with a small stress bump and vibrato-free jitter.
        f0 = f0a + (f0b - f0a) * u + 12.0 * np.sin(np.pi * u)
        phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
        # Formants glide in from a neutral schwa over the first third.
        target = np.array(_VOWELS[vowel])
        schwa = np.array((500.0, 1500.0, 2500.0))
        glide = np.clip(u / 0.35, 0.0, 1.0)[:, None]
        formants = schwa + (target - schwa) * glide  # (m, 3)
        voiced = np.zeros(m)
        h_max = int(min(nyquist * 0.9, 4000.0) / max(f0a, f0b, 60.0))
        for h in range(1, h_max + 1):
            fh = h * f0
            amp = np.zeros(m)
            for j in range(3):
                amp += _FORMANT_GAINS[j] / (1.0 + ((fh - formants[:, j]) / _BANDWIDTHS[j]) ** 2)
            amp *= 1.0 / h**0.6 + 0.05  # glottal tilt
            voiced += amp * np.sin(h * phase)
        # Loudness: quick attack, held, soft release.
        env = np.minimum(1.0, u / 0.12) * np.minimum(1.0, (1.0 - u) / 0.3)
        env = np.clip(env, 0.0, 1.0) ** 1.5
        seg = voiced * env
        if onset:
            # A consonant: high-passed noise burst leading into the vowel.
            c = min(int(0.05 * sample_rate), m)
            noise = np.diff(rng.standard_normal(c + 1))
            burst = noise * np.hanning(2 * c)[:c][::-1] * 0.35
            seg[:c] = seg[:c] * np.linspace(0.2, 1.0, c) + burst
        out[i0:i0 + m] += seg
    peak = float(np.max(np.abs(out))) or 1.0
    return np.round(out / peak * 0.6 * 32767.0).astype(np.int16)

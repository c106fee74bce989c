"""Sample arithmetic of audio going in and out: what a producer hands in
becomes s16le PCM (:func:`as_pcm16`), and the playout gain (:func:`apply_volume_into`).

Pure-Python twin of ``_pcm_c.pyx``: same API, same results, same exception
types and messages (any change lands in both in the same commit).

What :func:`as_pcm16` takes, precisely:

* ``bytes`` and ``bytearray``, and any C-contiguous buffer of one-byte items
  (format ``B``, ``b`` or ``c``: a ``memoryview``, ``array('B')``, a numpy
  ``uint8`` array): raw s16le PCM, returned as it is.  Its length may be odd:
  the controller carries a half sample to the next call.  A non-contiguous
  one-byte buffer is refused (``TypeError``): its bytes are not a stream.
* Typed buffers are read by their values, never as raw memory: numpy arrays
  and other buffers (``memoryview``, ``array.array``) of ``int16`` (either byte
  order) or ``float32`` / ``float64`` (either byte order) samples, of shape
  ``(n,)`` or ``(n, 1)``, with any strides.
  ``int16`` that is little-endian and C-contiguous is returned as it is (no
  copy); other ``int16`` is copied into new ``bytes``.
  Floats are samples in [-1, 1]: each is limited to [-1.0, 1.0], multiplied by
  32768 (exact in binary floating point), rounded to the nearest integer with
  ties to even (``numpy.rint``) and limited to [-32768, 32767], into new
  ``bytes``.  So 1.0 becomes 32767, -1.0 becomes -32768, and an int16 signal
  divided by 32768 (as soundfile, torchaudio and most TTS engines do) comes
  back unchanged.  NaN becomes 0.  A sample above 1.0, below -1.0 or NaN is
  *clipped*: their number is added to ``stats.samples_clipped`` when a
  ``stats`` object is given (the hook the controller's stats read).
* Anything else is refused, naming what was found and what to do: another
  dtype (``TypeError``: int32, float16, bool, ...), items of an odd size above
  one byte (``TypeError``), more than one channel or another shape
  (``ValueError``: downmix first), an object without the buffer protocol
  (``TypeError``).

Threads: both functions keep no state; ``stats`` is updated in place, so
share one ``stats`` object only between calls that are serialised (the
controller's producer lock).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

__all__ = ["AudioInputStats", "GAIN_ONE", "Pcm16Input", "apply_volume_into", "as_pcm16", "volume_gain"]

# Unity gain of the Q15 volume arithmetic (see volume_gain).
GAIN_ONE = 1 << 15

_LITTLE = sys.byteorder == "little"
_ORDER_CHARS = "@=<>!"
_BYTE_CODES = ("B", "b", "c")
_INT16_FORMATS = ("h", "<h", "=h", "@h") if _LITTLE else ("h", "=h", "@h", ">h")


class AudioInputStats:
    """Counters of the audio conversion, kept by the caller (one per stream).

    ``samples_clipped``: float samples outside [-1, 1] (or NaN) limited on the
    way in.
    """

    __slots__ = ("samples_clipped",)

    def __init__(self) -> None:
        self.samples_clipped = 0

    def __repr__(self) -> str:
        return f"AudioInputStats(samples_clipped={self.samples_clipped})"


def _split_format(fmt: str) -> tuple[str, str]:
    """(byte order, item code) of a one-item struct format; order is
    ``"<"`` or ``">"``, code may be anything (checked by the caller)."""
    order = "<" if _LITTLE else ">"
    if fmt and fmt[0] in _ORDER_CHARS:
        if fmt[0] in "<>":
            order = fmt[0]
        elif fmt[0] == "!":
            order = ">"
        fmt = fmt[1:]
    return order, fmt


def _type_name(fmt: str) -> str:
    try:
        return np.dtype(fmt).name
    except (TypeError, ValueError):
        return f"items of format {fmt!r}"


def _refuse_type(what: str, name: str) -> TypeError:
    return TypeError(
        f"{what}: {name} samples are not accepted: pass int16 samples, float32 or "
        f"float64 samples in [-1, 1], or raw s16le bytes"
    )


def _check_shape(what: str, shape: tuple) -> None:
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return
    if len(shape) == 0:
        raise ValueError(f"{what}: a 0-d array is not audio: pass a 1-d array of samples")
    if len(shape) == 2:
        hint = ""
        if shape[0] == 1 and shape[1] > 1:
            hint = "; one channel first (channels, n)? pass x[0]"
        raise ValueError(
            f"{what}: shape {tuple(shape)} is {shape[1]} channels: downmix to mono "
            f"first (e.g. x.mean(axis=1)); shape (n,) or (n, 1) expected{hint}"
        )
    raise ValueError(f"{what}: shape {tuple(shape)} is not mono audio: shape (n,) or (n, 1) expected")


def _floats_to_pcm16(x: np.ndarray, stats: Any) -> bytes:
    # np.rint is round-half-even; clipping to [-1, 1] first makes the product
    # at most 32768 in magnitude, and only +32768 needs the second limit.
    inside = np.abs(x) <= 1.0  # False for NaN
    if not inside.all():
        clipped = int(x.size - np.count_nonzero(inside))
        x = np.where(np.isnan(x), 0.0, np.clip(x, -1.0, 1.0))
        if stats is not None:
            stats.samples_clipped += clipped
    y = np.rint(x * 32768.0)
    np.minimum(y, 32767.0, out=y)
    return y.astype("<i2").tobytes()


def as_pcm16(data: Any, *, what: str = "pcm", stats: Optional[Any] = None) -> Any:
    """``data`` as s16le mono PCM: the object itself when it already is
    (bytes-likes, little-endian contiguous int16), else new ``bytes``.

    See the module docstring for what is taken and how floats are rounded;
    ``what`` names the argument in error messages; ``stats`` (an object with
    an int attribute ``samples_clipped``, e.g. :class:`AudioInputStats`) counts
    clipped float samples.  Raises TypeError / ValueError (nothing converted).
    """
    cls = type(data)
    if cls is bytes or cls is bytearray:
        return data
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(
            f"{what} must be a bytes-like object or a numpy array of samples, got {cls.__name__}"
        ) from None
    with mv:
        fmt = mv.format
        order, code = _split_format(fmt)
        if mv.itemsize == 1 and code in _BYTE_CODES:
            if not mv.c_contiguous:
                raise TypeError(
                    f"{what}: a non-contiguous buffer of bytes is not a PCM stream: "
                    f"pass bytes(buf), or the samples as a numpy array"
                )
            return data
        if mv.itemsize % 2 and mv.itemsize > 1:
            raise TypeError(
                f"{what}: items of {mv.itemsize} bytes (format {fmt!r}) are not whole "
                f"16-bit samples: pass int16 or float32/float64 samples, or raw s16le bytes"
            )
        if code not in ("h", "f", "d"):
            raise _refuse_type(what, _type_name(fmt))
        _check_shape(what, mv.shape)
        if code == "h" and order == "<" and mv.c_contiguous:
            return data
        if isinstance(data, np.ndarray):
            arr = data.reshape(-1)
        else:
            arr = np.asarray(mv).reshape(-1)
        if code == "h":
            return arr.astype("<i2").tobytes()
        return _floats_to_pcm16(arr.astype(np.float64), stats)


class Pcm16Input:
    """The input conversion of one producer: :meth:`convert` is
    :func:`as_pcm16` with the clipping counted in :attr:`samples_clipped`.

    (The compiled twin converts into a scratch bytearray reused from call to
    call: what :meth:`convert` returns for converted input is valid until the
    next call, for handing straight to a call that copies it.)  One thread at
    a time (the producer's lock); ``samples_clipped`` may be read from any
    thread.
    """

    __slots__ = ("what", "samples_clipped")

    def __init__(self, what: str = "pcm") -> None:
        if not isinstance(what, str):
            raise TypeError(f"what must be a str, got {type(what).__name__}")
        self.what = what
        self.samples_clipped = 0

    def convert(self, data: Any) -> Any:
        """``data`` as s16le mono PCM (see :func:`as_pcm16`)."""
        return as_pcm16(data, what=self.what, stats=self)

    def __repr__(self) -> str:
        return f"Pcm16Input(what={self.what!r}, samples_clipped={self.samples_clipped})"


def volume_gain(volume: Any) -> int:
    """The Q15 gain of a volume in [0.0, 1.0]: ``round(volume * 32768)``
    (ties to even), 0 to 32768 (:data:`GAIN_ONE` is unity).

    Raises TypeError for a non-number, ValueError outside [0, 1] or NaN.
    """
    if isinstance(volume, bool) or not isinstance(volume, (int, float, np.integer, np.floating)):
        raise TypeError(f"volume must be a number, got {type(volume).__name__}")
    v = float(volume)
    if not (0.0 <= v <= 1.0):  # NaN fails too
        raise ValueError(f"volume must be in [0.0, 1.0], got {volume!r}")
    return round(v * GAIN_ONE)


def _int16_view(buf: Any) -> np.ndarray:
    try:
        mv = memoryview(buf)
    except TypeError:
        raise TypeError(f"expected a writable int16 buffer, got {type(buf).__name__}") from None
    with mv:
        if mv.readonly:
            raise TypeError("expected a writable int16 buffer, got a read-only buffer")
        if mv.format not in _INT16_FORMATS:
            raise TypeError(f"expected an int16 buffer, got item format {mv.format!r}")
        if not mv.c_contiguous:
            raise TypeError("expected a C-contiguous int16 buffer")
        nbytes = mv.nbytes
    return np.frombuffer(buf, dtype=np.int16) if nbytes else np.empty(0, np.int16)


def apply_volume_into(buf: Any, volume: Any) -> None:
    """Scale the samples of ``buf`` (a writable C-contiguous native int16
    buffer) in place by ``volume`` in [0.0, 1.0].

    Exact integer arithmetic: with ``g = volume_gain(volume)``, each sample
    ``x`` becomes ``(x * g + 16384) >> 15`` (an arithmetic shift: the product
    rounded to nearest, ties towards +infinity).  Volume 1.0 leaves every
    sample as it is, 0.0 makes silence, silence stays silence, and the result
    never leaves int16.  (The compiled twin allocates nothing; this one a
    temporary int32 array.)
    """
    g = volume_gain(volume)
    view = _int16_view(buf)
    if g == GAIN_ONE or view.size == 0:
        return
    if g == 0:
        view[:] = 0
        return
    # int32 never overflows: |x * g| <= 2**30.
    wide = view.astype(np.int32)
    wide *= g
    wide += 1 << 14
    wide >>= 15
    view[:] = wide

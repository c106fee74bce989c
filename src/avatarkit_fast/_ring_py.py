"""Reference implementation of the two playout buffers (pure Python + numpy).

:class:`PcmRing` holds int16 mono PCM in a circular buffer that grows to a cap;
:class:`KeyframeStore` holds ``(n, 120)`` float32 keyframes in one contiguous
array so that the wire decoder can write new keyframes straight into it.
``_ring_c.pyx`` is the compiled twin: any change here lands there in the same
commit, with the same behaviour and the same exception types.

These classes are not thread-safe on their own: the pure-Python controller
serialises calls with a lock; the compiled twin relies on the GIL (see its
module docstring).
"""

from __future__ import annotations

import sys

import numpy as np

from .errors import BufferFull

__all__ = ["PcmRing", "KeyframeStore", "KEYFRAME_FLOATS"]

from ._schema import KEYFRAME_FLOATS  # noqa: E402  (re-exported)
_PCM_INITIAL = 1 << 12  # samples (a quarter second at 16 kHz; grows)
_KF_INITIAL = 128  # keyframes (about 5 s at 25 fps)
_INT16_FORMATS = ("h", "<h", "=h") if sys.byteorder == "little" else ("h", "=h", ">h")
_FLOAT32_FORMATS = ("f", "<f", "=f") if sys.byteorder == "little" else ("f", "=f", ">f")


def _writable_view(obj, formats, what: str) -> np.ndarray:
    """A flat numpy view of a writable C-contiguous buffer of one item type."""
    try:
        mv = memoryview(obj)
    except TypeError:
        raise TypeError(
            f"expected a writable {what} buffer, got {type(obj).__name__}"
        ) from None
    if mv.readonly:
        raise TypeError(f"expected a writable {what} buffer, got a read-only buffer")
    if mv.format not in formats:
        raise TypeError(f"expected a {what} buffer, got item format {mv.format!r}")
    if not mv.c_contiguous:
        raise TypeError(f"expected a C-contiguous {what} buffer")
    if mv.nbytes == 0:
        return np.empty(0, dtype=np.int16 if what == "int16" else np.float32)
    return np.frombuffer(mv.cast("B"), dtype=np.int16 if what == "int16" else np.float32)


def _bytes_view(data) -> memoryview:
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(
            f"PCM must be a bytes-like object, got {type(data).__name__}"
        ) from None
    if not mv.c_contiguous:
        raise TypeError("PCM buffer must be C-contiguous")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


_GAIN_ONE = 1 << 15


def _scale(view: np.ndarray, gain: int) -> None:
    # int32 never overflows: |x * gain| <= 2**30.
    wide = view.astype(np.int32)
    wide *= gain
    wide += 1 << 14
    wide >>= 15
    view[:] = wide


class PcmRing:
    """Circular int16 PCM buffer, growing from a small size to ``max_samples``.

    :meth:`write` takes raw s16le bytes of any length: an odd trailing byte is
    carried and completed by the next write.  A write either stores every whole
    sample it brings or, past the cap, raises :class:`BufferFull` and stores none.
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self._cap = int(max_samples)
        self._buf = np.zeros(min(_PCM_INITIAL, self._cap), dtype=np.int16)
        self._head = 0
        self._count = 0
        self._carry = -1  # pending low byte of a half sample, or -1
        self.last_request = 0
        # The last output buffer and its numpy view, reused while it comes back
        # (as the compiled twin keeps the buffer exported).
        self._out_obj = None
        self._out_arr = None
        self._gain = _GAIN_ONE  # Q15 playout gain (set_gain)

    @property
    def available(self) -> int:
        """Whole samples buffered and not yet read."""
        return self._count

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def max_samples(self) -> int:
        return self._cap

    @property
    def has_carry(self) -> bool:
        """True when half a sample waits for its second byte."""
        return self._carry >= 0

    def write(self, data) -> int:
        """Append s16le bytes; returns the number of whole samples stored."""
        mv = _bytes_view(data)
        nbytes = mv.nbytes
        carry = self._carry
        total = nbytes + (1 if carry >= 0 else 0)
        n = total >> 1
        if self._count + n > self._cap:
            raise BufferFull(
                f"PCM buffer full: {self._count} samples buffered, {n} more "
                f"would pass the cap of {self._cap}"
            )
        if n:
            raw = np.frombuffer(mv, dtype=np.uint8)
            if carry >= 0:
                samples = np.empty(n, dtype="<i2")
                b = samples.view(np.uint8)
                b[0] = carry
                b[1 : 2 * n] = raw[: 2 * n - 1]
                rest = raw[2 * n - 1 :]
            else:
                samples = raw[: 2 * n].view("<i2")
                rest = raw[2 * n :]
            self._put(samples.astype(np.int16, copy=False))
            self._carry = int(rest[0]) if len(rest) else -1
        elif nbytes:  # a single byte and no carry
            self._carry = int(mv[0])
        return n

    def _put(self, samples: np.ndarray) -> None:
        n = len(samples)
        need = self._count + n
        if need > len(self._buf):
            self._grow(need)
        cap = len(self._buf)
        tail = (self._head + self._count) % cap
        first = min(n, cap - tail)
        self._buf[tail : tail + first] = samples[:first]
        if first < n:
            self._buf[: n - first] = samples[first:]
        self._count += n

    def _grow(self, need: int) -> None:
        size = len(self._buf)
        while size < need:
            size *= 2
        size = min(size, self._cap)
        new = np.zeros(size, dtype=np.int16)
        self._copy_out(new, self._count)
        self._buf = new
        self._head = 0

    def _copy_out(self, dst: np.ndarray, k: int) -> None:
        cap = len(self._buf)
        first = min(k, cap - self._head)
        dst[:first] = self._buf[self._head : self._head + first]
        if first < k:
            dst[first:k] = self._buf[: k - first]

    def read_into(self, out, limit: int) -> int:
        """Copy up to ``min(limit, available, len(out))`` samples to the start
        of ``out`` and zero the rest; returns the number copied.

        ``out`` is a writable C-contiguous int16 buffer; its length in samples
        is left in :attr:`last_request`.
        """
        if out is self._out_obj:
            dst = self._out_arr
        else:
            dst = _writable_view(out, _INT16_FORMATS, "int16")
            self._out_obj, self._out_arr = out, dst
        n = len(dst)
        self.last_request = n
        k = min(n, self._count, limit if limit > 0 else 0)
        if k:
            self._copy_out(dst, k)
            self._head = (self._head + k) % len(self._buf)
            self._count -= k
            if self._gain != _GAIN_ONE:
                _scale(dst[:k], self._gain)
        if k < n:
            dst[k:] = 0
        return k

    def release_buffers(self) -> None:
        """Forget the caller's output buffer held since the last read."""
        self._out_obj = self._out_arr = None

    def clear(self) -> None:
        """Drop every buffered sample and any carried half sample."""
        self._head = 0
        self._count = 0
        self._carry = -1

    def drop_carry(self) -> bool:
        """Forget a dangling half sample; True if there was one."""
        had = self._carry >= 0
        self._carry = -1
        return had

    @property
    def gain(self) -> int:
        """The Q15 gain applied to the samples read (32768: unity)."""
        return self._gain

    def set_gain(self, gain: int) -> None:
        """Scale the samples :meth:`read_into` copies out by ``gain / 32768``
        (0..32768), each ``x -> (x * gain + 16384) >> 15`` as
        ``audio.apply_volume_into``; what is buffered is not touched."""
        if not 0 <= gain <= _GAIN_ONE:
            raise ValueError(f"gain must be in 0..{_GAIN_ONE}, got {gain}")
        self._gain = int(gain)


class KeyframeStore:
    """Keyframes of one conversation, ``(rows, 120)`` float32, contiguous.

    Keyframes are addressed by their absolute index in the conversation.  New
    keyframes are written into :meth:`free_rows` (by the wire decoder), marked
    with :meth:`add_pending`, and become visible only at :meth:`commit`;
    :meth:`rollback` forgets them.  Rows behind the play position are dropped
    when space is needed (:meth:`reserve`), so the store holds at most
    ``max_frames`` unplayed keyframes and raises :class:`BufferFull` past that.
    """

    def __init__(self, max_frames: int) -> None:
        if max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {max_frames}")
        self._cap = int(max_frames)
        self._arr = np.zeros((min(_KF_INITIAL, self._cap), KEYFRAME_FLOATS), dtype=np.float32)
        self._start = 0  # row of keyframe `first`
        self._count = 0  # committed keyframes from `first`
        self._pending = 0
        self._first = 0
        self._idle = np.zeros(KEYFRAME_FLOATS, dtype=np.float32)
        self._idle_tab = np.zeros((1, KEYFRAME_FLOATS), dtype=np.float32)
        self._snap = np.zeros(KEYFRAME_FLOATS, dtype=np.float32)
        self._scratch = np.zeros((3, KEYFRAME_FLOATS), dtype=np.float32)
        self.epoch = 0
        self._out_obj = None
        self._out_arr = None

    @property
    def total(self) -> int:
        """Absolute index one past the last committed keyframe."""
        return self._first + self._count

    @property
    def first(self) -> int:
        """Absolute index of the oldest keyframe still held."""
        return self._first

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def capacity(self) -> int:
        return len(self._arr)

    @property
    def max_frames(self) -> int:
        return self._cap

    def free_rows(self) -> np.ndarray:
        """Writable view of the rows after the pending ones (may be empty)."""
        return self._arr[self._start + self._count + self._pending :]

    def reserve(self, n: int, floor: int) -> None:
        """Make room for ``n`` more pending rows, dropping keyframes before
        ``floor`` (never the last committed one); BufferFull past the cap."""
        if n < 0:
            raise ValueError("n must be >= 0")
        keep_from = min(floor, self.total - 1)
        drop = keep_from - self._first
        if drop > 0:
            self._start += drop
            self._count -= drop
            self._first += drop
        live = self._count + self._pending
        need = live + n
        if need > self._cap:
            raise BufferFull(
                f"keyframe buffer full: {live} keyframes held, {n} more would "
                f"pass the cap of {self._cap}"
            )
        rows = len(self._arr)
        if self._start + need <= rows:
            return
        if need <= rows:
            self._arr[:live] = self._arr[self._start : self._start + live]
            self._start = 0
            return
        size = rows
        while size < need:
            size *= 2
        size = min(size, self._cap)
        new = np.zeros((size, KEYFRAME_FLOATS), dtype=np.float32)
        new[:live] = self._arr[self._start : self._start + live]
        self._arr = new
        self._start = 0

    def add_pending(self, n: int) -> None:
        """Mark ``n`` rows at the start of :meth:`free_rows` as written."""
        free = len(self._arr) - (self._start + self._count + self._pending)
        if n < 0 or n > free:
            raise ValueError(f"add_pending({n}) with {free} free rows")
        self._pending += n

    def commit(self, epoch: int) -> int:
        """Make the pending keyframes visible; returns how many.  A commit for
        an older ``epoch`` (the store was cleared meanwhile) keeps nothing."""
        n = self._pending
        self._pending = 0
        if epoch != self.epoch:
            return 0
        self._count += n
        return n

    def rollback(self) -> None:
        self._pending = 0

    def clear(self) -> None:
        """Forget every keyframe (a new conversation); bumps :attr:`epoch`."""
        self._start = 0
        self._count = 0
        self._pending = 0
        self._first = 0
        self.epoch += 1

    def stage(self, frames) -> int:
        """Copy ``frames`` ((k, 120), float32-convertible) into the free rows
        as pending keyframes (call :meth:`reserve` first); returns k."""
        arr = np.asarray(frames, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS:
            raise ValueError(f"expected (k, {KEYFRAME_FLOATS}) keyframes, got shape {arr.shape}")
        k = arr.shape[0]
        free = self.free_rows()
        if k > len(free):
            raise BufferFull(f"{k} keyframes staged into {len(free)} free rows: reserve first")
        free[:k] = arr
        self.add_pending(k)
        return k

    def _row(self, index: int) -> np.ndarray:
        if index < self._first or index >= self.total:
            raise IndexError(
                f"keyframe {index} not held (held: {self._first}..{self.total - 1})"
            )
        return self._arr[self._start + index - self._first]

    def copy_into(self, out, index: int) -> None:
        """Copy keyframe ``index`` into ``out`` (writable float32, 120 items)."""
        dst = self._frame_view(out)
        dst[:] = self._row(index)

    def blend_into(self, out, index: int, t: float) -> None:
        """``out = k[index] + (k[index + 1] - k[index]) * t`` in float32."""
        dst = self._frame_view(out)
        a = self._row(index)
        b = self._row(index + 1)
        np.subtract(b, a, out=dst)
        dst *= np.float32(t)
        dst += a

    def release_buffers(self) -> None:
        """Forget the caller's frame buffer held since the last call."""
        self._out_obj = self._out_arr = None

    def _frame_view(self, out) -> np.ndarray:
        if out is self._out_obj:
            return self._out_arr
        dst = _frame_view(out)
        self._out_obj, self._out_arr = out, dst
        return dst

    def idle_into(self, out) -> None:
        dst = self._frame_view(out)
        dst[:] = self._idle

    def set_idle(self, frame) -> None:
        """The idle pose: one frame (an idle table of one row)."""
        arr = np.asarray(frame, dtype=np.float32).reshape(-1)
        if arr.shape != (KEYFRAME_FLOATS,):
            raise ValueError(f"idle frame must hold {KEYFRAME_FLOATS} floats, got {arr.size}")
        self._idle[:] = arr
        self._idle_tab = arr.reshape(1, KEYFRAME_FLOATS).copy()

    def set_idle_table(self, frames) -> None:
        """The idle motion: ``(k, 120)`` keyframes looped at the keyframe rate
        (a private copy is kept); its first row becomes the idle frame."""
        arr = np.array(frames, dtype=np.float32, order="C", copy=True)
        if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS or arr.shape[0] < 1:
            raise ValueError(f"expected (k >= 1, {KEYFRAME_FLOATS}) idle keyframes, got shape {arr.shape}")
        self._idle_tab = arr
        self._idle[:] = arr[0]

    @property
    def idle_rows(self) -> int:
        """Rows of the looped idle table."""
        return len(self._idle_tab)

    @staticmethod
    def _lerp(dst, a, b, t) -> None:
        # a + (b - a) * t in float32, one rounding per step (as the twin)
        np.subtract(b, a, out=dst)
        dst *= np.float32(t)
        dst += a

    def _compose(self, dst, index: int, t: float, idle_index: int, idle_t: float,
                 w_out: float, w_in: float) -> None:
        tab = self._idle_tab
        rows = len(tab)
        i0 = idle_index % rows
        idle = tab[i0]
        scratch = self._scratch
        if np.float32(idle_t) != 0:
            self._lerp(scratch[0], idle, tab[(i0 + 1) % rows], idle_t)
            idle = scratch[0]
        if np.float32(w_out) >= 1:
            bg = idle
        else:
            self._lerp(scratch[1], self._snap, idle, w_out)
            bg = scratch[1]
        if np.float32(w_in) <= 0 or self._count <= 0:
            dst[:] = bg
            return
        row = index - self._first
        if row < 0:
            row = 0
        if row >= self._count - 1:
            row = self._count - 1
            t = 0.0
        fg = self._arr[self._start + row]
        if np.float32(t) != 0:
            self._lerp(scratch[2], fg, self._arr[self._start + row + 1], t)
            fg = scratch[2]
        if np.float32(w_in) >= 1:
            dst[:] = fg
        else:
            self._lerp(dst, bg, fg, w_in)

    def compose_into(self, out, index: int, t: float, idle_index: int, idle_t: float,
                     w_out: float, w_in: float) -> None:
        """The presented frame into ``out``: the background ``lerp(snapshot,
        idle, w_out)`` (the idle row ``idle_index`` of the looped table,
        blended with the next at ``idle_t``), then ``lerp(background,
        keyframe, w_in)`` with the keyframe ``index`` blended with the next at
        ``t`` (clamped to the keyframes held; none held: the background)."""
        self._compose(self._frame_view(out), index, t, idle_index, idle_t, w_out, w_in)

    def snapshot(self, index: int, t: float, idle_index: int, idle_t: float,
                 w_out: float, w_in: float) -> None:
        """The same frame as :meth:`compose_into`, kept as the snapshot (the
        pose a transition to the idle starts from)."""
        self._compose(self._snap, index, t, idle_index, idle_t, w_out, w_in)

    def snapshot_frame(self) -> np.ndarray:
        """A copy of the snapshot (120 float32)."""
        return self._snap.copy()


def _frame_view(out) -> np.ndarray:
    dst = _writable_view(out, _FLOAT32_FORMATS, "float32")
    if len(dst) != KEYFRAME_FLOATS:
        raise ValueError(f"frame buffer must hold {KEYFRAME_FLOATS} floats, got {len(dst)}")
    return dst

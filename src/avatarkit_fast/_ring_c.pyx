"""Compiled playout buffers: twin of ``_ring_py.py`` (same API, same behaviour,
same exception types; any change lands in both in the same commit).

Threading: every method runs holding the GIL, so one producer and one
consumer thread see each call as atomic.  Only copies of at least
``NOGIL_COPY_BYTES`` run with the GIL released (while the ring is marked busy
and other calls wait for that one copy).  Smaller copies keep the GIL on
purpose: giving it up for a 10 ms read would cost more than the copy, and
getting it back can take a whole switch interval (5 ms) when the other
thread is busy in Python, which is exactly the wait an audio callback must
not have.

The last output buffer passed to ``read_into`` / ``copy_into`` is kept
exported (``PyObject_GetBuffer``) and reused while the same object comes back:
the per-tick cost is then a pointer compare, not a buffer negotiation.  A
held export also stops the owner from resizing or freeing that memory.
"""

cimport cython
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS,
    PyBUF_FORMAT,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
cdef extern from "Python.h":
    void* PyMem_Calloc(size_t nelem, size_t elsize)

cdef extern from *:
    """
    /* The linear blend, a + (b - a) * t in float32, rounded after each
       operation exactly as the pure twin's numpy steps are.  A compiler may
       fuse the multiply and the add into one FMA (one rounding: different
       bits); setup.py forbids that (-ffp-contract=off, /fp:precise), and the
       code does not rely on the flags: the product is stored to a volatile,
       so it is rounded to float before the add whatever the compiler or its
       flags (the standard makes a volatile access observable).  Clang also
       honours the pragma. */
    #if defined(__clang__)
    #pragma STDC FP_CONTRACT OFF
    #endif
    static void akf_blend(float *dst, const float *a, const float *b, float t, Py_ssize_t n) {
        Py_ssize_t i;
        for (i = 0; i < n; i++) {
            volatile float p = (b[i] - a[i]) * t;
            dst[i] = a[i] + p;
        }
    }
    """
    void akf_blend(float* dst, const float* a, const float* b, float t, Py_ssize_t n) noexcept nogil

cdef inline void _scale(int16_t* p, Py_ssize_t n, int g) noexcept nogil:
    # The Q15 volume of audio.apply_volume_into: x -> (x * g + 16384) >> 15
    # (an arithmetic shift; |x * g| <= 2**30 fits an int), in place.
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = <int16_t>((<int>p[i] * g + 16384) >> 15)

from cpython.pythread cimport (
    NOWAIT_LOCK,
    WAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_release_lock,
)
from cpython.mem cimport PyMem_Free
from libc.stdint cimport int16_t, uint16_t
from libc.string cimport memcpy, memmove, memset

import sys

import numpy as np

from avatarkit_fast.errors import BufferFull

__all__ = ["PcmRing", "KeyframeStore", "KEYFRAME_FLOATS", "NOGIL_COPY_BYTES"]

from avatarkit_fast._schema import KEYFRAME_FLOATS

NOGIL_COPY_BYTES = 1 << 16
cdef Py_ssize_t _NOGIL_BYTES = NOGIL_COPY_BYTES
cdef Py_ssize_t _PCM_INITIAL = 1 << 12
cdef Py_ssize_t _KF_INITIAL = 128
cdef Py_ssize_t _KF = KEYFRAME_FLOATS
cdef bint _LITTLE = sys.byteorder == "little"


cdef inline bint _is_int16_format(const char* fmt) noexcept:
    if fmt == NULL:
        return True
    if fmt[0] == b'h' and fmt[1] == 0:
        return True
    if fmt[1] == b'h' and fmt[2] == 0:
        if fmt[0] == b'=':
            return True
        return fmt[0] == (b'<' if _LITTLE else b'>')
    return False


cdef inline bint _is_float32_format(const char* fmt) noexcept:
    if fmt == NULL:
        return True
    if fmt[0] == b'f' and fmt[1] == 0:
        return True
    if fmt[1] == b'f' and fmt[2] == 0:
        if fmt[0] == b'=':
            return True
        return fmt[0] == (b'<' if _LITTLE else b'>')
    return False


cdef int _get_writable(object obj, Py_buffer* view, str what) except -1:
    try:
        PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
    except (BufferError, ValueError, TypeError):
        try:
            mv = memoryview(obj)
        except TypeError:
            raise TypeError(
                f"expected a writable {what} buffer, got {type(obj).__name__}"
            ) from None
        if mv.readonly:
            raise TypeError(f"expected a writable {what} buffer, got a read-only buffer") from None
        raise TypeError(f"expected a C-contiguous {what} buffer") from None
    return 0


@cython.final
cdef class PcmRing:
    """Circular int16 PCM buffer, growing from a small size to ``max_samples``.

    :meth:`write` takes raw s16le bytes of any length: an odd trailing byte is
    carried and completed by the next write.  A write either stores every whole
    sample it brings or, past the cap, raises :class:`BufferFull` and stores none.
    """

    def __cinit__(self, Py_ssize_t max_samples):
        self._buf = NULL
        self._lock = NULL
        self._out_obj = None
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self._cap = max_samples
        self._capacity = min(_PCM_INITIAL, max_samples)
        self._buf = <int16_t*>PyMem_Calloc(self._capacity, sizeof(int16_t))
        if self._buf == NULL:
            raise MemoryError()
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()
        self._head = 0
        self.available = 0
        self._carry = -1
        self._busy = False
        self.last_request = 0
        self._gain = 32768

    def __dealloc__(self):
        self._release_out()
        if self._buf != NULL:
            PyMem_Free(self._buf)
            self._buf = NULL
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    @property
    def capacity(self):
        return self._capacity

    @property
    def max_samples(self):
        return self._cap

    @property
    def has_carry(self):
        """True when half a sample waits for its second byte."""
        return self._carry >= 0

    cdef int _wait_idle(self) except -1:
        # Another thread is in a GIL-free copy: wait for it without the GIL.
        while self._busy:
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
                PyThread_release_lock(self._lock)
        return 0

    cdef int _acquire(self) except -1:
        # Become the owner of a GIL-free copy.  Called before any position is
        # computed, because the GIL may be given up while waiting here.
        while True:
            if not self._busy and PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
                self._busy = True
                return 0
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
                PyThread_release_lock(self._lock)

    cdef void _release(self) noexcept:
        self._busy = False
        PyThread_release_lock(self._lock)

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t size = self._capacity
        cdef Py_ssize_t first
        cdef int16_t* new
        while size < need:
            size *= 2
        if size > self._cap:
            size = self._cap
        new = <int16_t*>PyMem_Calloc(size, sizeof(int16_t))
        if new == NULL:
            raise MemoryError()
        first = min(self.available, self._capacity - self._head)
        memcpy(new, self._buf + self._head, first * 2)
        if first < self.available:
            memcpy(new + first, self._buf, (self.available - first) * 2)
        PyMem_Free(self._buf)
        self._buf = new
        self._capacity = size
        self._head = 0
        return 0

    cpdef Py_ssize_t write(self, object data) except -1:
        """Append s16le bytes; returns the number of whole samples stored."""
        cdef Py_buffer view
        cdef const unsigned char* src
        cdef Py_ssize_t nbytes, n, m, tail, first, i
        cdef bint big
        cdef uint16_t u
        try:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        except (BufferError, ValueError, TypeError):
            if isinstance(data, memoryview) or hasattr(data, "__buffer__"):
                raise TypeError("PCM buffer must be C-contiguous") from None
            raise TypeError(
                f"PCM must be a bytes-like object, got {type(data).__name__}"
            ) from None
        try:
            src = <const unsigned char*>view.buf
            nbytes = view.len
            n = (nbytes + (1 if self._carry >= 0 else 0)) >> 1
            if self.available + n > self._cap:
                raise BufferFull(
                    f"PCM buffer full: {self.available} samples buffered, {n} more "
                    f"would pass the cap of {self._cap}"
                )
            if n == 0:
                if nbytes:
                    self._carry = src[0]
                return 0
            big = n * 2 >= _NOGIL_BYTES
            if big:
                self._acquire()
            else:
                self._wait_idle()
            try:
                if self.available + n > self._capacity:
                    self._grow(self.available + n)
                tail = (self._head + self.available) % self._capacity
                m = n
                if self._carry >= 0:
                    u = <uint16_t>self._carry | (<uint16_t>src[0] << 8)
                    self._buf[tail] = <int16_t>u
                    tail += 1
                    if tail == self._capacity:
                        tail = 0
                    src += 1
                    nbytes -= 1
                    m -= 1
                first = min(m, self._capacity - tail)
                if big:
                    with nogil:
                        memcpy(self._buf + tail, src, first * 2)
                        memcpy(self._buf, src + first * 2, (m - first) * 2)
                else:
                    memcpy(self._buf + tail, src, first * 2)
                    memcpy(self._buf, src + first * 2, (m - first) * 2)
                if not _LITTLE:
                    for i in range(m):
                        u = <uint16_t>self._buf[(tail + i) % self._capacity]
                        self._buf[(tail + i) % self._capacity] = <int16_t>((u >> 8) | (u << 8))
                self._carry = src[2 * m] if nbytes - 2 * m else -1
                self.available += n
            finally:
                if big:
                    self._release()
            return n
        finally:
            PyBuffer_Release(&view)

    cdef int16_t* _out_ptr(self, object out) except NULL:
        cdef Py_buffer view
        if out is self._out_obj:
            return <int16_t*>self._out_view.buf
        self._wait_idle()
        self._release_out()
        _get_writable(out, &view, "int16")
        if view.itemsize != 2 or not _is_int16_format(view.format):
            fmt = (<bytes>view.format).decode() if view.format != NULL else "B"
            PyBuffer_Release(&view)
            raise TypeError(f"expected a int16 buffer, got item format {fmt!r}")
        self._out_view = view
        self._out_obj = out
        if view.len == 0:
            # A zero-length export may carry a NULL pointer: never cache it.
            self._release_out()
            return <int16_t*>1
        return <int16_t*>self._out_view.buf

    cdef void _release_out(self) noexcept:
        if self._out_obj is not None:
            PyBuffer_Release(&self._out_view)
            self._out_obj = None

    def release_buffers(self):
        """Give back the caller's output buffer held since the last read."""
        self._wait_idle()
        self._release_out()

    cpdef Py_ssize_t read_into(self, object out, Py_ssize_t limit) except -1:
        """Copy up to ``min(limit, available, len(out))`` samples to the start
        of ``out`` and zero the rest; returns the number copied.

        ``out`` is a writable C-contiguous int16 buffer; its length in samples
        is left in :attr:`last_request`.
        """
        cdef int16_t* dst = self._out_ptr(out)
        cdef Py_ssize_t n = self._out_view.len >> 1 if self._out_obj is not None else 0
        cdef Py_ssize_t k, first
        cdef bint big
        self.last_request = n
        if limit > 0 and self.available > 0 and n > 0:
            big = n * 2 >= _NOGIL_BYTES
            if big:
                self._acquire()
            elif self._busy:
                self._wait_idle()
            k = min(n, min(self.available, limit))
            first = min(k, self._capacity - self._head)
            if big:
                with nogil:
                    memcpy(dst, self._buf + self._head, first * 2)
                    memcpy(dst + first, self._buf, (k - first) * 2)
                    if self._gain != 32768:
                        _scale(dst, k, self._gain)
                    if k < n:
                        memset(dst + k, 0, (n - k) * 2)
            else:
                memcpy(dst, self._buf + self._head, first * 2)
                if first < k:
                    memcpy(dst + first, self._buf, (k - first) * 2)
                if self._gain != 32768:
                    _scale(dst, k, self._gain)
                if k < n:
                    memset(dst + k, 0, (n - k) * 2)
            self._head += k
            if self._head >= self._capacity:
                self._head -= self._capacity
            self.available -= k
            if big:
                self._release()
            return k
        if n > 0:
            memset(dst, 0, n * 2)
        return 0

    cpdef clear(self):
        """Drop every buffered sample and any carried half sample."""
        self._wait_idle()
        self._head = 0
        self.available = 0
        self._carry = -1

    cpdef bint drop_carry(self) except -1:
        """Forget a dangling half sample; True if there was one."""
        cdef bint had = self._carry >= 0
        self._carry = -1
        return had

    @property
    def gain(self):
        """The Q15 gain applied to the samples read (32768: unity)."""
        return self._gain

    cpdef set_gain(self, int gain):
        """Scale the samples :meth:`read_into` copies out by ``gain / 32768``
        (0..32768), each ``x -> (x * gain + 16384) >> 15`` as
        ``audio.apply_volume_into``, in place, allocating nothing; what is
        buffered is not touched."""
        if not 0 <= gain <= 32768:
            raise ValueError(f"gain must be in 0..32768, got {gain}")
        self._gain = gain


@cython.final
cdef class KeyframeStore:
    """Keyframes of one conversation, ``(rows, 120)`` float32, contiguous.

    Keyframes are addressed by their absolute index in the conversation.  New
    keyframes are written into :meth:`free_rows` (by the wire decoder), marked
    with :meth:`add_pending`, and become visible only at :meth:`commit`;
    :meth:`rollback` forgets them.  Rows behind the play position are dropped
    when space is needed (:meth:`reserve`), so the store holds at most
    ``max_frames`` unplayed keyframes and raises :class:`BufferFull` past that.
    """

    def __cinit__(self, Py_ssize_t max_frames):
        self._out_obj = None
        self._arr = None
        if max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {max_frames}")
        self._cap = max_frames
        self._set_array(np.zeros((min(_KF_INITIAL, max_frames), _KF), dtype=np.float32))
        self._start = 0
        self._count = 0
        self._pending = 0
        self._first = 0
        self.total = 0
        memset(self._idle, 0, sizeof(self._idle))
        self.epoch = 0
        self._idle_arr = None
        self._set_idle_table(np.zeros((1, _KF), dtype=np.float32))
        memset(self._snap, 0, sizeof(self._snap))

    def __dealloc__(self):
        self._release_out()

    cdef int _set_array(self, object arr) except -1:
        cdef float[:, ::1] mv = arr
        self._arr = arr
        self._rows = mv.shape[0]
        self._data = &mv[0, 0]
        return 0

    @property
    def first(self):
        """Absolute index of the oldest keyframe still held."""
        return self._first

    @property
    def pending(self):
        return self._pending

    @property
    def capacity(self):
        return self._rows

    @property
    def max_frames(self):
        return self._cap

    cpdef object free_rows(self):
        """Writable view of the rows after the pending ones (may be empty)."""
        return self._arr[self._start + self._count + self._pending:]

    cpdef reserve(self, Py_ssize_t n, long long floor):
        """Make room for ``n`` more pending rows, dropping keyframes before
        ``floor`` (never the last committed one); BufferFull past the cap."""
        cdef long long keep_from, drop
        cdef Py_ssize_t live, need, size
        if n < 0:
            raise ValueError("n must be >= 0")
        keep_from = min(floor, self._first + self._count - 1)
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
        if self._start + need <= self._rows:
            return
        if need <= self._rows:
            memmove(self._data, self._data + self._start * _KF, live * _KF * sizeof(float))
            self._start = 0
            return
        size = self._rows
        while size < need:
            size *= 2
        if size > self._cap:
            size = self._cap
        new = np.zeros((size, _KF), dtype=np.float32)
        new[:live] = self._arr[self._start:self._start + live]
        self._set_array(new)
        self._start = 0

    cpdef add_pending(self, Py_ssize_t n):
        """Mark ``n`` rows at the start of :meth:`free_rows` as written."""
        cdef Py_ssize_t free = self._rows - (self._start + self._count + self._pending)
        if n < 0 or n > free:
            raise ValueError(f"add_pending({n}) with {free} free rows")
        self._pending += n

    cpdef Py_ssize_t commit(self, unsigned long long epoch) except -1:
        """Make the pending keyframes visible; returns how many.  A commit for
        an older ``epoch`` (the store was cleared meanwhile) keeps nothing."""
        cdef Py_ssize_t n = self._pending
        self._pending = 0
        if epoch != self.epoch:
            return 0
        self._count += n
        self.total += n
        return n

    cpdef rollback(self):
        self._pending = 0

    cpdef clear(self):
        """Forget every keyframe (a new conversation); bumps :attr:`epoch`."""
        self._start = 0
        self._count = 0
        self._pending = 0
        self._first = 0
        self.total = 0
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

    cdef float* _row(self, long long index) except NULL:
        if index < self._first or index >= self._first + self._count:
            raise IndexError(
                f"keyframe {index} not held (held: {self._first}..{self._first + self._count - 1})"
            )
        return self._data + (self._start + (index - self._first)) * _KF

    cdef float* _out_ptr(self, object out) except NULL:
        cdef Py_buffer view
        if out is self._out_obj:
            return <float*>self._out_view.buf
        self._release_out()
        _get_writable(out, &view, "float32")
        if view.itemsize != 4 or not _is_float32_format(view.format):
            fmt = (<bytes>view.format).decode() if view.format != NULL else "B"
            PyBuffer_Release(&view)
            raise TypeError(f"expected a float32 buffer, got item format {fmt!r}")
        if view.len != _KF * 4:
            n = view.len // view.itemsize
            PyBuffer_Release(&view)
            raise ValueError(f"frame buffer must hold {KEYFRAME_FLOATS} floats, got {n}")
        self._out_view = view
        self._out_obj = out
        return <float*>self._out_view.buf

    cdef void _release_out(self) noexcept:
        if self._out_obj is not None:
            PyBuffer_Release(&self._out_view)
            self._out_obj = None

    def release_buffers(self):
        """Give back the caller's frame buffer held since the last call."""
        self._release_out()

    cpdef copy_into(self, object out, long long index):
        """Copy keyframe ``index`` into ``out`` (writable float32, 120 items)."""
        cdef float* dst = self._out_ptr(out)
        memcpy(dst, self._row(index), _KF * sizeof(float))

    cpdef blend_into(self, object out, long long index, float t):
        """``out = k[index] + (k[index + 1] - k[index]) * t`` in float32."""
        cdef float* dst = self._out_ptr(out)
        cdef const float* a = self._row(index)
        cdef const float* b = self._row(index + 1)
        akf_blend(dst, a, b, t, _KF)  # bit-identical to the twin (see akf_blend)

    cpdef idle_into(self, object out):
        cdef float* dst = self._out_ptr(out)
        memcpy(dst, self._idle, _KF * sizeof(float))

    def set_idle(self, frame):
        """The idle pose: one frame (an idle table of one row)."""
        cdef float[::1] mv
        arr = np.ascontiguousarray(np.asarray(frame, dtype=np.float32).reshape(-1))
        if arr.shape != (KEYFRAME_FLOATS,):
            raise ValueError(f"idle frame must hold {KEYFRAME_FLOATS} floats, got {arr.size}")
        mv = arr
        memcpy(self._idle, &mv[0], _KF * sizeof(float))
        self._set_idle_table(arr.reshape(1, _KF).copy())

    def set_idle_table(self, frames):
        """The idle motion: ``(k, 120)`` keyframes looped at the keyframe rate
        (a private copy is kept); its first row becomes the idle frame."""
        arr = np.array(frames, dtype=np.float32, order="C", copy=True)
        if arr.ndim != 2 or arr.shape[1] != KEYFRAME_FLOATS or arr.shape[0] < 1:
            raise ValueError(f"expected (k >= 1, {KEYFRAME_FLOATS}) idle keyframes, got shape {arr.shape}")
        self._set_idle_table(arr)
        memcpy(self._idle, self._idle_tab, _KF * sizeof(float))

    cdef int _set_idle_table(self, object arr) except -1:
        cdef float[:, ::1] mv = arr
        self._idle_arr = arr
        self._idle_rows = mv.shape[0]
        self._idle_tab = &mv[0, 0]
        return 0

    @property
    def idle_rows(self):
        """Rows of the looped idle table."""
        return self._idle_rows

    cdef void _compose(self, float* dst, long long index, float t, long long idle_index,
                       float idle_t, float w_out, float w_in) noexcept:
        # Each step is one float32 lerp, rounded as the twin's numpy steps.
        cdef long long i0 = idle_index % self._idle_rows
        cdef const float* idle = self._idle_tab + i0 * _KF
        cdef const float* bg
        cdef const float* fg
        cdef long long row
        if idle_t != 0:
            akf_blend(self._scratch, idle, self._idle_tab + ((i0 + 1) % self._idle_rows) * _KF,
                      idle_t, _KF)
            idle = self._scratch
        if w_out >= 1:
            bg = idle
        else:
            akf_blend(self._scratch + _KF, self._snap, idle, w_out, _KF)
            bg = self._scratch + _KF
        if w_in <= 0 or self._count <= 0:
            if dst != bg:
                memcpy(dst, bg, _KF * sizeof(float))
            return
        row = index - self._first
        if row < 0:
            row = 0
        if row >= self._count - 1:
            row = self._count - 1
            t = 0
        fg = self._data + (self._start + row) * _KF
        if t != 0:
            akf_blend(self._scratch + 2 * _KF, fg, fg + _KF, t, _KF)
            fg = self._scratch + 2 * _KF
        if w_in >= 1:
            memcpy(dst, fg, _KF * sizeof(float))
        else:
            akf_blend(dst, bg, fg, w_in, _KF)

    cpdef compose_into(self, object out, long long index, float t, long long idle_index,
                       float idle_t, float w_out, float w_in):
        """The presented frame into ``out``: the background ``lerp(snapshot,
        idle, w_out)`` (the idle row ``idle_index`` of the looped table,
        blended with the next at ``idle_t``), then ``lerp(background,
        keyframe, w_in)`` with the keyframe ``index`` blended with the next at
        ``t`` (clamped to the keyframes held; none held: the background)."""
        cdef float* dst = self._out_ptr(out)
        self._compose(dst, index, t, idle_index, idle_t, w_out, w_in)

    cpdef snapshot(self, long long index, float t, long long idle_index,
                   float idle_t, float w_out, float w_in):
        """The same frame as :meth:`compose_into`, kept as the snapshot (the
        pose a transition to the idle starts from)."""
        self._compose(self._snap, index, t, idle_index, idle_t, w_out, w_in)

    def snapshot_frame(self):
        """A copy of the snapshot (120 float32)."""
        return np.array(<float[:_KF]>self._snap, dtype=np.float32)

# C header of the compiled playout buffers (see _ring_c.pyx).
cimport cython
from cpython.buffer cimport Py_buffer
from cpython.pythread cimport PyThread_type_lock
from libc.stdint cimport int16_t


@cython.final
cdef class PcmRing:
    # Fields a read or a write touches first (two cache lines), the rest after.
    cdef int16_t* _buf
    cdef Py_ssize_t _head
    cdef readonly Py_ssize_t available
    cdef Py_ssize_t _capacity
    cdef readonly Py_ssize_t last_request
    cdef int _carry
    cdef bint _busy
    cdef object _out_obj
    cdef Py_buffer _out_view
    cdef Py_ssize_t _cap
    cdef PyThread_type_lock _lock
    cdef int _gain  # Q15 playout gain, 32768 unity (set_gain)

    cdef int _wait_idle(self) except -1
    cdef int _acquire(self) except -1
    cdef void _release(self) noexcept
    cdef int _grow(self, Py_ssize_t need) except -1
    cdef int16_t* _out_ptr(self, object out) except NULL
    cdef void _release_out(self) noexcept
    cpdef Py_ssize_t write(self, object data) except -1
    cpdef Py_ssize_t read_into(self, object out, Py_ssize_t limit) except -1
    cpdef clear(self)
    cpdef bint drop_carry(self) except -1
    cpdef set_gain(self, int gain)

    # For the batched tick (_group_c), which prefetches what the next read
    # copies: its first byte, NULL when nothing is buffered.
    cdef inline const char* next_read(self) noexcept:
        if self.available > 0:
            return <const char*>(self._buf + self._head)
        return NULL


@cython.final
cdef class KeyframeStore:
    # Fields a frame copy touches first, the idle frame (480 bytes) last.
    cdef float* _data
    cdef Py_ssize_t _start
    cdef Py_ssize_t _count
    cdef long long _first
    cdef readonly long long total
    cdef object _out_obj
    cdef Py_buffer _out_view
    cdef Py_ssize_t _pending
    cdef Py_ssize_t _rows
    cdef Py_ssize_t _cap
    cdef readonly unsigned long long epoch
    cdef object _arr
    cdef float _idle[120]
    cdef object _idle_arr  # the looped idle table (k, 120), a private copy
    cdef const float* _idle_tab
    cdef Py_ssize_t _idle_rows
    cdef float _snap[120]  # the pose a transition to the idle starts from
    cdef float _scratch[360]

    cdef int _set_array(self, object arr) except -1
    cdef float* _out_ptr(self, object out) except NULL
    cdef void _release_out(self) noexcept
    cdef float* _row(self, long long index) except NULL
    cpdef object free_rows(self)
    cpdef reserve(self, Py_ssize_t n, long long floor)
    cpdef add_pending(self, Py_ssize_t n)
    cpdef Py_ssize_t commit(self, unsigned long long epoch) except -1
    cpdef rollback(self)
    cpdef clear(self)
    cpdef copy_into(self, object out, long long index)
    cpdef blend_into(self, object out, long long index, float t)
    cpdef idle_into(self, object out)
    cdef int _set_idle_table(self, object arr) except -1
    cdef void _compose(self, float* dst, long long index, float t, long long idle_index,
                       float idle_t, float w_out, float w_in) noexcept
    cpdef compose_into(self, object out, long long index, float t, long long idle_index,
                       float idle_t, float w_out, float w_in)
    cpdef snapshot(self, long long index, float t, long long idle_index,
                   float idle_t, float w_out, float w_in)

    # For the batched tick (_group_c), which prefetches the keyframe a frame
    # copy will read: keyframe ``index`` (the last held one past the end),
    # NULL when none is held or ``index`` is before the first held.
    cdef inline const float* frame_near(self, long long index) noexcept:
        cdef long long row = index - self._first
        if self._count <= 0 or row < 0:
            return NULL
        if row >= self._count:
            row = self._count - 1
        return self._data + (self._start + row) * 120

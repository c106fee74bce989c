"""Compiled batched playout tick: twin of ``_group_py.py`` (same calls, same
order, same results; any change lands in both in the same commit).

At thousands of sessions a tick is bound by memory latency, not computation:
each session's engine, ring and keyframe store are cold by the time the loop
comes back to it.  The loop calls the engines' C-level methods (no Python
calls) and prefetches the sessions a few places ahead: their engine structs
first, then (through the engine, now cached) their ring and store structs,
then the PCM and keyframe bytes the tick will copy.
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.ref cimport PyObject

from avatarkit_fast._ring_c cimport KeyframeStore, PcmRing
from avatarkit_fast._sync_c cimport SyncEngine
from avatarkit_fast.errors import ClosedError

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define AKF_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
    #define AKF_PREFETCHW(p) __builtin_prefetch((const void *)(p), 1, 3)
    #else
    #define AKF_PREFETCH(p) ((void)(p))
    #define AKF_PREFETCHW(p) ((void)(p))
    #endif
    """
    void AKF_PREFETCH(const void* p) noexcept nogil
    void AKF_PREFETCHW(const void* p) noexcept nogil

__all__ = ["Batch"]

# How far ahead each stage looks (sessions): the engine struct, then the
# objects it points to, then their data.  A tick costs about 100 ns cached;
# these distances cover a few hundred ns of memory latency (measured at
# 10,000 sessions: 12/6/3 beat both no prefetch and twice the distances).
cdef Py_ssize_t _AHEAD_ENGINE = 12
cdef Py_ssize_t _AHEAD_PARTS = 6
cdef Py_ssize_t _AHEAD_DATA = 3


cdef inline void _prefetch_engine(PyObject* e) noexcept:
    # The engine's hot fields are in its first two cache lines (_sync_c.pxd);
    # its refcount changes, so ask for the line writable.
    AKF_PREFETCHW(e)
    AKF_PREFETCH((<char*>e) + 64)


cdef inline void _prefetch_parts(PyObject* e, PyObject* a, PyObject* f) noexcept:
    cdef SyncEngine eng = <SyncEngine>e
    cdef char* p = <char*>eng.batch_pcm()
    cdef char* k = <char*>eng.batch_frames()
    AKF_PREFETCHW(p)
    AKF_PREFETCHW(p + 64)
    AKF_PREFETCHW(p + 128)
    AKF_PREFETCHW(k)
    AKF_PREFETCHW(k + 64)
    AKF_PREFETCHW(k + 128)
    AKF_PREFETCHW(a)
    AKF_PREFETCHW(f)


cdef inline void _prefetch_data(PyObject* e) noexcept:
    cdef SyncEngine eng = <SyncEngine>e
    cdef PcmRing pcm = <PcmRing>eng.batch_pcm()
    cdef KeyframeStore kf = <KeyframeStore>eng.batch_frames()
    cdef const char* a = pcm.next_read()
    cdef const float* row
    if a != NULL:
        # the 10 ms read: 320 bytes at 16 kHz (more at higher rates: the
        # hardware prefetcher follows on)
        AKF_PREFETCH(a)
        AKF_PREFETCH(a + 64)
        AKF_PREFETCH(a + 128)
        AKF_PREFETCH(a + 192)
        AKF_PREFETCH(a + 256)
        AKF_PREFETCH(a + 319)
    row = kf.frame_near(eng.batch_frame_index())
    if row != NULL:
        AKF_PREFETCH(row)
        AKF_PREFETCH(row + 16)
        AKF_PREFETCH(row + 32)
        AKF_PREFETCH(row + 48)
        AKF_PREFETCH(row + 64)
        AKF_PREFETCH(row + 80)
        AKF_PREFETCH(row + 104)


@cython.final
cdef class Batch:
    """The sessions of a group (compiled engines, checked once here), ticked
    in one call."""

    cdef tuple _targets

    def __cinit__(self, targets):
        targets = tuple(targets)
        for t in targets:
            if type(t) is not SyncEngine:
                raise TypeError(f"expected compiled sync engines, got {type(t).__name__}")
            # An engine's parts, once given by __init__, are never taken
            # away (close keeps them), so checking here covers every tick.
            if not (<SyncEngine>t).batchable():
                raise ClosedError("a SyncEngine used before __init__ cannot be batched")
        self._targets = targets

    def __len__(self):
        return len(self._targets)

    @cython.boundscheck(True)  # the row lists are indexed checked (cheap)
    def tick(self, list audio_rows, list frame_rows):
        """Each target's 10 ms tick in order: ``read_audio_into`` of its audio
        row, then ``current_frame_into`` of its frame row; the same calls, in
        the same order, as a loop over the sessions.  An exception from a
        session propagates at once (the sessions before it have ticked)."""
        cdef tuple targets = self._targets
        cdef Py_ssize_t n = PyTuple_GET_SIZE(targets)
        cdef Py_ssize_t i, j
        cdef SyncEngine eng
        if PyList_GET_SIZE(audio_rows) != n or PyList_GET_SIZE(frame_rows) != n:
            raise ValueError(f"{n} sessions, {len(audio_rows)} audio rows, {len(frame_rows)} frame rows")
        # The prefetches stop at the end of the lists, never read past them.
        for i in range(min(n, _AHEAD_ENGINE)):
            _prefetch_engine(PyTuple_GET_ITEM(targets, i))
        for i in range(min(n, _AHEAD_PARTS)):
            _prefetch_parts(PyTuple_GET_ITEM(targets, i), PyList_GET_ITEM(audio_rows, i),
                            PyList_GET_ITEM(frame_rows, i))
        for i in range(min(n, _AHEAD_DATA)):
            _prefetch_data(PyTuple_GET_ITEM(targets, i))
        for i in range(n):
            j = i + _AHEAD_ENGINE
            if j < n:
                _prefetch_engine(PyTuple_GET_ITEM(targets, j))
            j = i + _AHEAD_PARTS
            if j < n and j < PyList_GET_SIZE(audio_rows) and j < PyList_GET_SIZE(frame_rows):
                _prefetch_parts(PyTuple_GET_ITEM(targets, j), PyList_GET_ITEM(audio_rows, j),
                                PyList_GET_ITEM(frame_rows, j))
            j = i + _AHEAD_DATA
            if j < n:
                _prefetch_data(PyTuple_GET_ITEM(targets, j))
            eng = <SyncEngine>PyTuple_GET_ITEM(targets, i)
            eng.read_audio_into(audio_rows[i])
            eng.current_frame_into(frame_rows[i])

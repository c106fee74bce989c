# C types for _sync_py.py compiled as _sync_c (the same source; _sync_c.py links to it).
cimport cython
from cpython.ref cimport PyObject

cdef double _smooth(double x) noexcept
from avatarkit_fast._ring_c cimport KeyframeStore, PcmRing


@cython.final
cdef class SyncEngine:
    # Hot fields first: a tick touches the first two cache lines only.
    cdef PcmRing _pcm
    cdef KeyframeStore _kf
    cdef readonly long long played
    cdef readonly long long samples_played
    cdef readonly int sample_rate
    cdef readonly int fps
    cdef readonly bint closed
    cdef bint _open  # initialised and not closed: zero (not open) until __init__
    cdef readonly bint active
    cdef readonly bint paused
    cdef readonly bint started
    cdef readonly bint audio_ended
    cdef readonly bint audio_only
    cdef readonly bint anim_ended
    cdef readonly bint stalled
    cdef readonly bint strict_sync
    cdef readonly bint linear
    cdef bint _first_sent
    cdef readonly int state
    cdef readonly long long samples_received
    cdef readonly object conversation_id
    cdef readonly long long underrun_samples
    cdef readonly long long waited
    cdef readonly long long max_wait_samples
    cdef object _notify
    cdef object _fallback
    cdef list _events  # (kind, arg) queued until the call's state is settled
    cdef bint _draining
    cdef readonly long long conversation
    cdef readonly long long frames_received
    cdef readonly long long frames_dropped_stale
    cdef readonly long long frames_ignored
    cdef readonly long long stalls
    cdef readonly long long conversations
    cdef readonly long long interrupts
    cdef readonly long long server_errors
    cdef object _convert  # the controller's input conversion (Pcm16Input)
    # presentation (the idle clock and the transitions)
    cdef readonly long long ticks  # samples read, silence included, ever
    cdef readonly long long transition_in_samples
    cdef readonly long long transition_out_samples
    cdef readonly int anim_state
    cdef long long _in_from
    cdef long long _end_at
    cdef bint _anim_events

    cpdef check_open(self)
    cdef _raise_not_open(self)
    cdef int _check_made(self) except -1
    cpdef bint accepting(self) except -1
    @cython.locals(n=Py_ssize_t)
    cpdef Py_ssize_t push_audio(self, object data, bint end) except -2
    @cython.locals(n=Py_ssize_t)
    cpdef Py_ssize_t commit_frames(self, unsigned long long epoch, bint end) except -1
    @cython.locals(k=Py_ssize_t, n=Py_ssize_t, limit=cython.longlong, total=cython.longlong,
                   unstall=bint, stall=bint, finished=bint, first=bint)
    cpdef Py_ssize_t read_audio_into(self, object buf) except -1
    @cython.locals(total=cython.longlong, pos=cython.longlong, idx=cython.longlong, rem=cython.longlong)
    cpdef current_frame_into(self, object buf)
    cpdef frame_at_into(self, object buf, long long back)
    @cython.locals(back=cython.longlong)
    cpdef frame_at_read_into(self, object buf, long long position)
    @cython.locals(sr=cython.longlong, ticks=cython.longlong, ipos=cython.longlong, iidx=cython.longlong,
                   it=cython.double, w_out=cython.double, tout=cython.longlong, since=cython.longlong,
                   w_in=cython.double, idx=cython.longlong, t=cython.double, p=cython.longlong,
                   tin=cython.longlong, pos=cython.longlong)
    cdef _compose(self, object buf, long long back, bint snap)
    @cython.locals(old=int)
    cdef int _begin_out(self) except -1
    cdef _anim_changed(self, int old)
    cdef _check_out(self)
    cdef _set_anim(self, int state)
    @cython.locals(b=cython.longlong)
    cpdef Py_ssize_t buffered_frames(self) except -1
    cdef _reset(self)
    @cython.locals(was_stalled=bint, old_state=int, old_anim=int)
    cdef _stop(self, bint notify)
    cdef _emit(self, int kind, object arg)
    cdef _deliver(self)
    cdef object _yield_converted(self, object data, bint end)

    # The interface of the batched tick (_group_c), declared for it: whether
    # the engine was initialised (its parts exist), its parts as bare
    # pointers to prefetch, and the keyframe index of the audio position.
    cdef inline bint batchable(self) noexcept:
        return self._pcm is not None and self._kf is not None and self.sample_rate > 0

    cdef inline PyObject* batch_pcm(self) noexcept:  # borrowed
        return <PyObject*>self._pcm

    cdef inline PyObject* batch_frames(self) noexcept:  # borrowed
        return <PyObject*>self._kf

    cdef inline long long batch_frame_index(self) noexcept:
        return self.played * self.fps // self.sample_rate

"""AvatarKit wire codec, compiled implementation.

Same behaviour as the pure twin ``_wire_py`` (which also supplies the
message dataclasses, the control-message codecs and the error texts); this
module owns the hot path, animation envelopes:

- pass 1 walks the whole envelope through a bounded cursor, validating every
  field and counting keyframes, and allocates nothing from the wire;
- pass 2, without the GIL, copies each packed little-endian float run straight
  into the output rows (``memcpy`` on little-endian hosts, a portable
  byte-assembling load on big-endian ones) and zeroes absent Flame fields.

A call either returns a whole result or raises; ``decode_animation_into``
writes to ``out`` only after pass 1 has accepted the input.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

cimport numpy as cnp

import numpy as np

from . import _wire_py as _py
from ._wire_py import (
    DEFAULT_MAX_FRAMES,
    FLAME_LAYOUT,
    KEYFRAME_FLOATS,
    KEYFRAME_WIRE_BYTES,
    AgoraEgressConfig,
    AnimationHeader,
    AnimationMessage,
    ClientAudioInput,
    ClientConfigureSession,
    ClientInterrupt,
    LiveKitEgressConfig,
    Message,
    MessageType,
    OtherMessage,
    ServerConfirmSession,
    ServerErrorMessage,
    TraceContext,
    encode_message,
)
from .errors import BufferFull

__all__ = _py.__all__

cnp.import_array()

cdef extern from *:
    """
    #include "numpy/npy_endian.h"
    #define AKF_HOST_BIG_ENDIAN (NPY_BYTE_ORDER == NPY_BIG_ENDIAN)
    """
    bint AKF_HOST_BIG_ENDIAN

# Wire floats are little-endian.  On a big-endian host they are assembled
# byte by byte; the flag is a module variable (not a macro) so that tests
# can run that path on a little-endian host too (``_use_portable_load``).
cdef bint _portable_load = AKF_HOST_BIG_ENDIAN

cdef Py_ssize_t SLOT_SIZES[7]
cdef Py_ssize_t SLOT_OFFSETS[7]
SLOT_SIZES[:] = [size for _, size in FLAME_LAYOUT]
SLOT_OFFSETS[:] = list(_py._SLOT_OFFSETS)

cdef int MAX_DEPTH = _py._MAX_DEPTH
cdef int KF = KEYFRAME_FLOATS

# Canonical keyframe bytes: before each slot's floats, a header run
# (keyframe tag and length before slot 0, then the slot's tag and length).
cdef uint8_t KF_TEMPLATE[512]
cdef Py_ssize_t HEAD_AT[7]
cdef Py_ssize_t HEAD_LEN[7]
cdef Py_ssize_t KF_WIRE = KEYFRAME_WIRE_BYTES


def _init_template():
    template = _py._KEYFRAME_TEMPLATE
    cols = _py._KEYFRAME_FLOAT_COLS
    assert len(template) <= 512
    for i in range(len(template)):
        KF_TEMPLATE[i] = template[i]
    prev_end = 0
    for slot in range(7):
        first = int(cols[4 * SLOT_OFFSETS[slot]])
        HEAD_AT[slot] = prev_end
        HEAD_LEN[slot] = first - prev_end
        prev_end = first + 4 * SLOT_SIZES[slot]
    assert prev_end == KF_WIRE


_init_template()


def _use_portable_load(bint on):
    """Test hook: force (or stop forcing) the big-endian float path; returns
    the previous setting."""
    global _portable_load
    old = _portable_load
    _portable_load = on or AKF_HOST_BIG_ENDIAN
    return old


# ---------------------------------------------------------------------------
# Errors: C code raises through ``_fail`` (which takes the GIL); the texts
# are the twin's.

cdef enum:
    E_TRUNC_VARINT = 1
    E_VARINT_OVERFLOW
    E_TAG_OVERFLOW
    E_FIELD_ZERO
    E_LEN_PAST_END
    E_TRUNC_FIXED
    E_GROUP_DEPTH
    E_GROUP_UNTERMINATED
    E_GROUP_MISMATCH
    E_GROUP_NO_START
    E_INVALID_WT
    E_WRONG_WT
    E_PACKED_LEN
    E_TRUNC_FLOAT
    E_TOO_MANY
    E_PARTIAL
    E_CAP
    E_CHANGED

# Field ids for E_WRONG_WT: (name, expected wire type).
cdef enum:
    W_TYPE = 0            # 1..8: Message oneof member fields
    W_SRA = 10            # + field number - 1
    W_KEYFRAMES = 20
    W_FLAME = 30          # + slot

_SRA_NAMES = ("connection_id", "req_id", "end", "animation", "avatar_id")


def _what(unsigned long long code):
    if code == W_TYPE:
        return "Message.type", 0
    if code < W_SRA:
        return f"Message field {code}", 2
    if code < W_KEYFRAMES:
        name = _SRA_NAMES[code - W_SRA]
        return f"ServerResponseAnimation.{name}", 0 if name == "end" else 2
    if code == W_KEYFRAMES:
        return "FlameAnimation.keyframes", 2
    return f"Flame.{FLAME_LAYOUT[code - W_FLAME][0]}", 2


def _problem(int code, unsigned long long a, unsigned long long b):
    if code == E_TRUNC_VARINT:
        return "truncated varint"
    if code == E_VARINT_OVERFLOW:
        return "varint longer than 10 bytes or overflowing 64 bits"
    if code == E_TAG_OVERFLOW:
        return f"field tag {a} overflows 32 bits"
    if code == E_FIELD_ZERO:
        return "field number 0"
    if code == E_LEN_PAST_END:
        return f"length {a} runs past the end of its message ({b} bytes left)"
    if code == E_TRUNC_FIXED:
        return f"truncated fixed{a * 8} field {b}"
    if code == E_GROUP_DEPTH:
        return f"groups nested deeper than {MAX_DEPTH}"
    if code == E_GROUP_UNTERMINATED:
        return f"unterminated group {a}"
    if code == E_GROUP_MISMATCH:
        return f"end of group {a} inside group {b}"
    if code == E_GROUP_NO_START:
        return f"end of group {a} without a start"
    if code == E_INVALID_WT:
        return f"invalid wire type {b} for field {a}"
    name, size = FLAME_LAYOUT[a] if a < 7 else ("", 0)
    if code == E_PACKED_LEN:
        return f"Flame.{name}: packed length {b} is not a multiple of 4"
    if code == E_TRUNC_FLOAT:
        return f"Flame.{name}: truncated float"
    if code == E_TOO_MANY:
        return f"Flame.{name}: more than {size} floats"
    if code == E_PARTIAL:
        return f"Flame.{name}: {b} floats, expected {size} or none"
    if code == E_CAP:
        return f"more than {a} keyframes (the configured cap)"
    return "the input changed while it was being decoded"


cdef int _fail(int code, Py_ssize_t offset, unsigned long long a=0,
               unsigned long long b=0) except -1 with gil:
    if code == E_WRONG_WT:
        what, expected = _what(a)
        raise _py._wrong_wire_type(what, expected, b, offset)
    raise _py._error(_problem(code, a, b), offset)


# ---------------------------------------------------------------------------
# The bounded cursor.  ``pos`` is advanced in place; ``end`` is the end of the
# enclosing message, and nothing is read at or past it.

cdef inline int _read_varint(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                             uint64_t* out) except -1 nogil:
    cdef Py_ssize_t p = pos[0]
    cdef Py_ssize_t start = p
    cdef uint64_t result = 0
    cdef uint64_t b
    cdef int shift = 0
    if p < end and buf[p] < 0x80:
        out[0] = buf[p]
        pos[0] = p + 1
        return 0
    while True:
        if p >= end:
            _fail(E_TRUNC_VARINT, start)
        b = buf[p]
        p += 1
        if shift == 63 and b > 1:
            _fail(E_VARINT_OVERFLOW, start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    out[0] = result
    pos[0] = p
    return 0


cdef inline int _read_tag(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                          int* fnum, int* wt) except -1 nogil:
    cdef Py_ssize_t p = pos[0]
    cdef uint64_t tag
    if p < end and 8 <= buf[p] < 0x80:
        fnum[0] = buf[p] >> 3
        wt[0] = buf[p] & 7
        pos[0] = p + 1
        return 0
    _read_varint(buf, pos, end, &tag)
    if tag > <uint64_t>0xFFFFFFFFU:
        _fail(E_TAG_OVERFLOW, p, tag)
    if tag >> 3 == 0:
        _fail(E_FIELD_ZERO, p)
    fnum[0] = <int>(tag >> 3)
    wt[0] = <int>(tag & 7)
    return 0


cdef inline int _read_len(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end,
                          Py_ssize_t* n) except -1 nogil:
    cdef Py_ssize_t start = pos[0]
    cdef uint64_t v
    _read_varint(buf, pos, end, &v)
    if v > <uint64_t>(end - pos[0]):
        _fail(E_LEN_PAST_END, start, v, end - pos[0])
    n[0] = <Py_ssize_t>v
    return 0


cdef int _skip(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end, int fnum, int wt,
               Py_ssize_t tag_at, int depth) except -1 nogil:
    """Skips the value of an unknown field (nested groups included)."""
    cdef uint64_t v
    cdef Py_ssize_t n, inner_at
    cdef int inner, iwt
    if wt == 0:
        _read_varint(buf, pos, end, &v)
    elif wt == 1 or wt == 5:
        n = 8 if wt == 1 else 4
        if end - pos[0] < n:
            _fail(E_TRUNC_FIXED, tag_at, n, fnum)
        pos[0] += n
    elif wt == 2:
        _read_len(buf, pos, end, &n)
        pos[0] += n
    elif wt == 3:
        if depth >= MAX_DEPTH:
            _fail(E_GROUP_DEPTH, tag_at)
        while True:
            if pos[0] >= end:
                _fail(E_GROUP_UNTERMINATED, tag_at, fnum)
            inner_at = pos[0]
            _read_tag(buf, pos, end, &inner, &iwt)
            if iwt == 4:
                if inner != fnum:
                    _fail(E_GROUP_MISMATCH, inner_at, inner, fnum)
                break
            _skip(buf, pos, end, inner, iwt, inner_at, depth + 1)
    elif wt == 4:
        _fail(E_GROUP_NO_START, tag_at, fnum)
    else:
        _fail(E_INVALID_WT, tag_at, fnum, wt)
    return 0


# ---------------------------------------------------------------------------
# Flame and FlameAnimation: pure C, shared by both passes.

cdef inline void _load_floats(float* dst, const uint8_t* src, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t v
    if not _portable_load:
        memcpy(dst, src, <size_t>count * 4)
        return
    for i in range(count):
        v = (<uint32_t>src[0] | (<uint32_t>src[1] << 8) | (<uint32_t>src[2] << 16)
             | (<uint32_t>src[3] << 24))
        memcpy(&dst[i], &v, 4)
        src += 4


cdef extern from *:
    """
    /* The canonical Flame (what the server sends and encode_animation writes):
       seven packed fields in order, each full.  Recognised by its length and
       header bytes, it needs no parsing, and its floats are copied with
       constant sizes that the compiler turns into plain moves.  Checked
       against the twin's template when the module loads. */
    #define AKF_CANON_LEN 495
    static const unsigned char akf_canon_pos[15] = {0, 1, 14, 15, 28, 29, 42, 43, 56, 57, 82, 83, 92, 93, 94};
    static const unsigned char akf_canon_val[15] = {0x0a, 0x0c, 0x12, 0x0c, 0x1a, 0x0c, 0x22, 0x0c, 0x2a, 0x18, 0x32, 0x08, 0x3a, 0x90, 0x03};
    static inline int akf_is_canonical(const unsigned char *b, Py_ssize_t len) {
        int i;
        if (len != AKF_CANON_LEN) return 0;
        for (i = 0; i < 15; i++) if (b[akf_canon_pos[i]] != akf_canon_val[i]) return 0;
        return 1;
    }
    static inline void akf_copy_canonical(float *row, const unsigned char *b) {
        memcpy(row + 0, b + 2, 12);
        memcpy(row + 3, b + 16, 12);
        memcpy(row + 6, b + 30, 12);
        memcpy(row + 9, b + 44, 12);
        memcpy(row + 12, b + 58, 24);
        memcpy(row + 18, b + 84, 8);
        /* Not one 400-byte memcpy: compilers expand that to "rep movsq",
           whose start-up cost dominates at this size; 16-byte moves are
           several times faster. */
        {
            unsigned char *d = (unsigned char *)(row + 20);
            const unsigned char *s = b + 95;
            int i;
            for (i = 0; i < 400; i += 16) memcpy(d + i, s + i, 16);
        }
    }
    """
    bint akf_is_canonical(const uint8_t* b, Py_ssize_t length) noexcept nogil
    void akf_copy_canonical(float* row, const uint8_t* b) noexcept nogil


def _check_canonical():
    """The C fast path must agree with the twin's canonical keyframe."""
    template = _py._KEYFRAME_TEMPLATE
    body = template[3:]
    assert template[:3] == b"\x0a\xef\x03" and len(body) == 495
    assert akf_is_canonical(body, len(body))
    floats = np.arange(KEYFRAME_FLOATS, dtype="<f4")
    wire = bytearray(body)
    wire_cols = _py._KEYFRAME_FLOAT_COLS - 3
    wire_arr = np.frombuffer(wire, dtype=np.uint8).copy()
    wire_arr[wire_cols] = floats.view(np.uint8)
    row = np.zeros(KEYFRAME_FLOATS, dtype=np.float32)
    cdef const uint8_t[::1] w = wire_arr
    cdef float[::1] r = row
    akf_copy_canonical(&r[0], &w[0])
    assert np.array_equal(row, floats)


_check_canonical()


cdef int _flame(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, float* row) except -1 nogil:
    """Validates one Flame; with ``row``, also writes its 120 floats there."""
    if akf_is_canonical(buf + pos, end - pos) and not _portable_load:
        if row != NULL:
            akf_copy_canonical(row, buf + pos)
        return 0
    cdef Py_ssize_t start = pos
    cdef Py_ssize_t tag_at, k
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t counts[7]
    cdef int fnum, wt, slot
    memset(counts, 0, sizeof(counts))
    while pos < end:
        tag_at = pos
        _read_tag(buf, &pos, end, &fnum, &wt)
        if fnum < 1 or fnum > 7:
            _skip(buf, &pos, end, fnum, wt, tag_at, 0)
            continue
        slot = fnum - 1
        if wt == 2:
            _read_len(buf, &pos, end, &n)
            if n & 3:
                _fail(E_PACKED_LEN, tag_at, slot, n)
        elif wt == 5:
            if end - pos < 4:
                _fail(E_TRUNC_FLOAT, tag_at, slot)
            n = 4
        else:
            _fail(E_WRONG_WT, tag_at, W_FLAME + slot, wt)
        k = n >> 2
        if counts[slot] + k > SLOT_SIZES[slot]:
            _fail(E_TOO_MANY, tag_at, slot)
        if row != NULL:
            _load_floats(row + SLOT_OFFSETS[slot] + counts[slot], buf + pos, k)
        counts[slot] += k
        pos += n
    for slot in range(7):
        if counts[slot] == 0:
            if row != NULL:
                memset(row + SLOT_OFFSETS[slot], 0, <size_t>SLOT_SIZES[slot] * 4)
        elif counts[slot] != SLOT_SIZES[slot]:
            _fail(E_PARTIAL, start, slot, counts[slot])
    return 0


cdef int _flame_animation(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end,
                          Py_ssize_t* count, Py_ssize_t limit, float* out) except -1 nogil:
    """Validates (``out`` NULL) or writes the keyframes of one FlameAnimation,
    appending to ``count``; more than ``limit`` keyframes is an error."""
    cdef Py_ssize_t tag_at, n
    cdef int fnum, wt
    while pos < end:
        tag_at = pos
        _read_tag(buf, &pos, end, &fnum, &wt)
        if fnum != 1:
            _skip(buf, &pos, end, fnum, wt, tag_at, 0)
            continue
        if wt != 2:
            _fail(E_WRONG_WT, tag_at, W_KEYFRAMES, wt)
        _read_len(buf, &pos, end, &n)
        if count[0] >= limit:
            _fail(E_CAP if out == NULL else E_CHANGED, tag_at, limit)
        _flame(buf, pos, pos + n, out + count[0] * KF if out != NULL else NULL)
        count[0] += 1
        pos += n
    return 0


# ---------------------------------------------------------------------------
# Pass 1: the envelope, with the GIL (strings, control members).

@cython.final
cdef class _Scan:
    cdef int mtype
    cdef int member            # oneof field number of the current member, 0 if none
    cdef Py_ssize_t n          # keyframes of the current animation member
    cdef Py_ssize_t eff_start  # offset of that member's first occurrence
    cdef object connection_id
    cdef object req_id
    cdef object avatar_id
    cdef bint end
    cdef object other          # a control member's dataclass (merged)

    def __cinit__(self):
        self.connection_id = ""
        self.req_id = ""
        self.avatar_id = ""


cdef object _read_string(const uint8_t* buf, Py_ssize_t* pos, Py_ssize_t end, int field):
    cdef Py_ssize_t n
    _read_len(buf, pos, end, &n)
    cdef Py_ssize_t at = pos[0]
    pos[0] += n
    try:
        return (<const char*>buf)[at:at + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _py._error(
            f"ServerResponseAnimation.{_SRA_NAMES[field - 1]} is not valid UTF-8",
            at + exc.start,
        ) from None


cdef int _scan_animation(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, _Scan st,
                         Py_ssize_t max_frames) except -1:
    cdef Py_ssize_t tag_at, n
    cdef uint64_t v
    cdef int fnum, wt
    while pos < end:
        tag_at = pos
        _read_tag(buf, &pos, end, &fnum, &wt)
        if fnum == 1 or fnum == 2 or fnum == 5:
            if wt != 2:
                _fail(E_WRONG_WT, tag_at, W_SRA + fnum - 1, wt)
            s = _read_string(buf, &pos, end, fnum)
            if fnum == 1:
                st.connection_id = s
            elif fnum == 2:
                st.req_id = s
            else:
                st.avatar_id = s
        elif fnum == 3:
            if wt != 0:
                _fail(E_WRONG_WT, tag_at, W_SRA + 2, wt)
            _read_varint(buf, &pos, end, &v)
            st.end = v != 0
        elif fnum == 4:
            if wt != 2:
                _fail(E_WRONG_WT, tag_at, W_SRA + 3, wt)
            _read_len(buf, &pos, end, &n)
            with nogil:
                _flame_animation(buf, pos, pos + n, &st.n, max_frames, NULL)
            pos += n
        else:
            _skip(buf, &pos, end, fnum, wt, tag_at, 0)
    return 0


cdef int _scan_envelope(const uint8_t* buf, Py_ssize_t end, _Scan st, Py_ssize_t max_frames,
                        object src) except -1:
    """Validates the whole envelope into ``st`` (oneof: a member of another
    field replaces the current one).  ``src`` is the input as ``bytes``, or
    None; control members are parsed by the twin, which needs ``bytes``."""
    cdef Py_ssize_t pos = 0
    cdef Py_ssize_t tag_at, n
    cdef uint64_t v
    cdef int fnum, wt
    while pos < end:
        tag_at = pos
        _read_tag(buf, &pos, end, &fnum, &wt)
        if fnum == 1:
            if wt != 0:
                _fail(E_WRONG_WT, tag_at, W_TYPE, wt)
            _read_varint(buf, &pos, end, &v)
            st.mtype = <int32_t><uint32_t>v
        elif 2 <= fnum <= 6 or fnum == 8:
            if wt != 2:
                _fail(E_WRONG_WT, tag_at, fnum, wt)
            _read_len(buf, &pos, end, &n)
            if fnum != st.member:
                st.member = fnum
                st.n = 0
                st.eff_start = tag_at
                st.connection_id = st.req_id = st.avatar_id = ""
                st.end = False
                st.other = None if fnum == 6 else _py._MEMBER_CLASSES[fnum]()
            if fnum == 6:
                _scan_animation(buf, pos, pos + n, st, max_frames)
            else:
                if src is None:
                    src = PyBytes_FromStringAndSize(<const char*>buf, end)
                _py._parse_fields(src, pos, pos + n, st.other, 0)
            pos += n
        else:
            _skip(buf, &pos, end, fnum, wt, tag_at, 0)
    return 0


# ---------------------------------------------------------------------------
# Pass 2: the keyframes of the current animation member, without the GIL.

cdef int _fill(const uint8_t* buf, Py_ssize_t pos, Py_ssize_t end, float* out,
               Py_ssize_t n) except -1 nogil:
    cdef Py_ssize_t count = 0
    cdef Py_ssize_t tag_at, m, p, sub_end
    cdef int fnum, wt
    while pos < end:
        tag_at = pos
        _read_tag(buf, &pos, end, &fnum, &wt)
        if fnum != 6 or wt != 2:
            _skip(buf, &pos, end, fnum, wt, tag_at, 0)
            continue
        _read_len(buf, &pos, end, &m)
        sub_end = pos + m
        p = pos
        while p < sub_end:
            tag_at = p
            _read_tag(buf, &p, sub_end, &fnum, &wt)
            if fnum == 4 and wt == 2:
                _read_len(buf, &p, sub_end, &m)
                _flame_animation(buf, p, p + m, &count, n, out)
                p += m
            else:
                _skip(buf, &p, sub_end, fnum, wt, tag_at, 0)
        pos = sub_end
    if count != n:
        # Only a buffer mutated by another thread between the passes gets here.
        _fail(E_CHANGED, 0)
    return 0


# ---------------------------------------------------------------------------
# Public API


@cython.final
cdef class _Input:
    """The input's bytes, held (and its buffer exported) for one call."""
    cdef Py_buffer view
    cdef bint has_view
    cdef const uint8_t* buf
    cdef Py_ssize_t size
    cdef object src  # the input if it is exactly ``bytes``, else None

    def __cinit__(self, data):
        if PyBytes_CheckExact(data):
            self.src = data
            self.buf = <const uint8_t*>PyBytes_AS_STRING(data)
            self.size = PyBytes_GET_SIZE(data)
            return
        try:
            PyObject_GetBuffer(data, &self.view, PyBUF_SIMPLE)
        except Exception:
            if _is_buffer(data):
                raise TypeError("expected a C-contiguous bytes-like object") from None
            raise TypeError(
                f"expected a bytes-like object, got {type(data).__name__}"
            ) from None
        self.has_view = True
        self.buf = <const uint8_t*>self.view.buf
        self.size = self.view.len

    def __dealloc__(self):
        if self.has_view:
            PyBuffer_Release(&self.view)


def _is_buffer(data):
    try:
        memoryview(data)
    except TypeError:
        return False
    return True


cdef _Scan _scan(_Input inp, object max_frames):
    cdef Py_ssize_t cap
    if type(max_frames) is int and 0 <= max_frames <= PY_SSIZE_T_MAX:
        cap = max_frames
    else:  # the twin converts or refuses it
        cap = min(_py._check_max_frames(max_frames), PY_SSIZE_T_MAX)
    cdef _Scan st = _Scan()
    _scan_envelope(inp.buf, inp.size, st, cap, inp.src)
    return st


cdef _Scan _scan_animation_envelope(_Input inp, object max_frames):
    cdef _Scan st = _scan(inp, max_frames)
    if st.mtype != 5:
        raise _py._error(
            f"expected an animation envelope (type 5), found type {st.mtype}", 0
        )
    return st


cdef object _animation(_Input inp, _Scan st):
    cdef Py_ssize_t n = st.n if st.member == 6 else 0
    cdef cnp.npy_intp dims[2]
    dims[0] = n
    dims[1] = KF
    frames = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    cdef float* out = <float*>cnp.PyArray_DATA(frames)
    if n:
        with nogil:
            _fill(inp.buf, st.eff_start, inp.size, out, n)
    return AnimationMessage(5, st.connection_id, st.req_id, st.end, st.avatar_id, frames)


def decode_animation(data, *, max_frames=DEFAULT_MAX_FRAMES):
    """Decodes an animation envelope (type 5) from any bytes-like object.

    Raises DecodeError for malformed input, another message type, or more
    than ``max_frames`` keyframes.
    """
    cdef _Input inp = _Input(data)
    return _animation(inp, _scan_animation_envelope(inp, max_frames))


def decode_animation_into(data, out, *, max_frames=DEFAULT_MAX_FRAMES):
    """Like :func:`decode_animation`, but writes the n keyframes to ``out[:n]``
    and returns a message whose ``frames`` is that view.

    Raises BufferFull (and leaves ``out`` untouched) if n > len(out); ``out``
    is also untouched when DecodeError is raised.
    """
    _py._check_out(out)
    cdef _Input inp = _Input(data)
    cdef _Scan st = _scan_animation_envelope(inp, max_frames)
    cdef Py_ssize_t n = st.n if st.member == 6 else 0
    cdef Py_ssize_t rows = out.shape[0]
    if n > rows:
        raise BufferFull(f"{n} keyframes do not fit in an output of {rows} rows")
    cdef float* dst = <float*>cnp.PyArray_DATA(out)
    if n:
        with nogil:
            _fill(inp.buf, st.eff_start, inp.size, dst, n)
    return AnimationMessage(5, st.connection_id, st.req_id, st.end, st.avatar_id, out[:n])


def count_keyframes(data, *, max_frames=DEFAULT_MAX_FRAMES):
    """Validates an animation envelope exactly as :func:`decode_animation`
    does and returns its number of keyframes."""
    cdef _Scan st = _scan_animation_envelope(_Input(data), max_frames)
    return st.n if st.member == 6 else 0


def peek_animation(data, *, max_frames=DEFAULT_MAX_FRAMES):
    """The header of any envelope, validated but with no keyframe copied.

    Accepts exactly the inputs :func:`decode_message` accepts (with the same
    ``max_frames``) and raises the same DecodeError for the others, so a
    successful peek means the envelope decodes.  Returns an
    :class:`AnimationHeader`: for an animation envelope (type 5) its
    ``req_id``, ``end`` and keyframe count, as :func:`decode_animation` would
    give them; for any other type, that type with ``req_id`` and ``end`` None
    and ``n_keyframes`` 0.
    """
    cdef _Scan st = _scan(_Input(data), max_frames)
    # tuple.__new__ straight: the NamedTuple's Python-level __new__ would cost
    # more than the scan of a small envelope.
    if st.mtype != 5:
        return _tuple_new(AnimationHeader, (st.mtype, None, None, 0))
    if st.member != 6:
        return _tuple_new(AnimationHeader, (5, "", False, 0))
    return _tuple_new(AnimationHeader, (5, st.req_id, st.end, st.n))


_tuple_new = tuple.__new__


def decode_message(data, *, max_frames=DEFAULT_MAX_FRAMES):
    """Decodes any envelope, dispatching on ``Message.type`` as the server SDK
    does: the dataclass for types 1, 2, 3, 4, 5, 7 (defaults if the oneof holds
    another member) and :class:`OtherMessage` for any other type.  Raises
    DecodeError only for malformed bytes."""
    cdef _Input inp = _Input(data)
    cdef _Scan st = _scan(inp, max_frames)
    want = _py._TYPE_MEMBER.get(st.mtype)
    if want is None:
        return OtherMessage(st.mtype)
    if want == 6:
        return _animation(inp, st)
    return st.other if st.member == want else _py._MEMBER_CLASSES[want]()


# ---------------------------------------------------------------------------
# Encoding

cdef inline Py_ssize_t _varint_size(uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t* _put_varint(uint8_t* p, uint64_t v) noexcept nogil:
    while v >= 0x80:
        p[0] = <uint8_t>((v & 0x7F) | 0x80)
        p += 1
        v >>= 7
    p[0] = <uint8_t>v
    return p + 1


cdef inline Py_ssize_t _string_size(bytes raw):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    return 1 + _varint_size(n) + n if n else 0


cdef inline uint8_t* _put_string(uint8_t* p, int fnum, bytes raw):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    if n:
        p = _put_varint(p, fnum << 3 | 2)
        p = _put_varint(p, n)
        memcpy(p, PyBytes_AS_STRING(raw), n)
        p += n
    return p


cdef void _put_keyframes(uint8_t* p, const uint8_t* src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef int slot
    for i in range(n):
        for slot in range(7):
            memcpy(p, &KF_TEMPLATE[HEAD_AT[slot]], HEAD_LEN[slot])
            p += HEAD_LEN[slot]
            memcpy(p, src + 4 * SLOT_OFFSETS[slot], 4 * SLOT_SIZES[slot])
            p += 4 * SLOT_SIZES[slot]
        src += 4 * KF


def encode_animation(frames, *, req_id, connection_id="", end=False, avatar_id=""):
    """Encodes an animation envelope in the canonical form the server emits:
    fields in number order, every Flame field packed and full, empty strings
    and ``end=False`` omitted, the ``animation`` field always present."""
    arr = _py._as_frames(frames)  # little-endian float32, C-contiguous
    cdef bytes conn = _py._utf8(connection_id, "connection_id")
    cdef bytes req = _py._utf8(req_id, "req_id")
    cdef bytes avatar = _py._utf8(avatar_id, "avatar_id")
    cdef bint is_end = bool(end)
    cdef Py_ssize_t n = arr.shape[0]
    cdef Py_ssize_t anim_len = n * KF_WIRE
    cdef Py_ssize_t body_len = (
        _string_size(conn) + _string_size(req) + (2 if is_end else 0)
        + 1 + _varint_size(anim_len) + anim_len + _string_size(avatar)
    )
    cdef Py_ssize_t total = 3 + _varint_size(body_len) + body_len
    result = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(result)
    cdef const uint8_t* src = <const uint8_t*>cnp.PyArray_DATA(arr)
    p[0] = 0x08
    p[1] = 0x05
    p[2] = 0x32
    p = _put_varint(p + 3, body_len)
    p = _put_string(p, 1, conn)
    p = _put_string(p, 2, req)
    if is_end:
        p[0] = 0x18
        p[1] = 0x01
        p += 2
    p[0] = 0x22
    p = _put_varint(p + 1, anim_len)
    with nogil:
        _put_keyframes(p, src, n)
    p += anim_len
    p = _put_string(p, 5, avatar)
    assert p == <uint8_t*>PyBytes_AS_STRING(result) + total
    return result

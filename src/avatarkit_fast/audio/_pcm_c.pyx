"""Compiled twin of ``_pcm_py.py`` (same API, same results, same exception
types and messages; any change lands in both in the same commit).

The common inputs are handled here: bytes and bytearray (returned at once),
numpy arrays of int16 / float32 / float64 read through the numpy C API (no
buffer negotiation), and typed buffers of the same through the buffer
protocol.  Whatever this module does not take, it hands to the pure twin,
which converts it or raises; so the messages cannot drift.

The float loops for contiguous native arrays are written branch-free so that
the C compiler vectorises them: the conversion of a 20 ms chunk costs about
as much as copying it.
"""

cimport cython
from cpython.buffer cimport PyBUF_RECORDS_RO, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE
from cpython.buffer cimport PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cimport numpy as cnp

from . import _pcm_py as _py
from ._pcm_py import GAIN_ONE, AudioInputStats, volume_gain

__all__ = _py.__all__

cnp.import_array()

cdef extern from *:
    """
    #include "numpy/npy_endian.h"
    #define AKF_PCM_HOST_BIG_ENDIAN (NPY_BYTE_ORDER == NPY_BIG_ENDIAN)
    """
    bint AKF_PCM_HOST_BIG_ENDIAN

cdef bint _BIG = AKF_PCM_HOST_BIG_ENDIAN

# The float32 loop with SSE2 (every x86-64): scale, convert with cvtps2dq,
# which rounds to nearest with ties to even (the MXCSR default, which Python
# and numpy leave alone), and pack with signed saturation, so that +1.0
# (32768) becomes 32767.  A lane outside [-1, 1] (or NaN) is noted in
# ``bad``; the caller then counts those and writes them again (32767, -32768
# or 0 for NaN: cvtps2dq is undefined for them).  Elsewhere the portable loop
# below, which compilers vectorise on their own.
cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #include <emmintrin.h>
    #define AKF_PCM_HAVE_SSE2 1
    static Py_ssize_t akf_f32_to_s16_sse2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) {
        const __m128 one = _mm_set1_ps(1.0f);
        const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        const __m128 scale = _mm_set1_ps(32768.0f);
        __m128 bad = _mm_setzero_ps();
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m128 a = _mm_loadu_ps(src + i), b = _mm_loadu_ps(src + i + 4);
            /* not (|x| <= 1): outside [-1, 1] or NaN */
            bad = _mm_or_ps(bad, _mm_or_ps(_mm_cmpnle_ps(_mm_and_ps(a, absmask), one),
                                           _mm_cmpnle_ps(_mm_and_ps(b, absmask), one)));
            __m128i ia = _mm_cvtps_epi32(_mm_mul_ps(a, scale));
            __m128i ib = _mm_cvtps_epi32(_mm_mul_ps(b, scale));
            _mm_storeu_si128((__m128i*)(dst + i), _mm_packs_epi32(ia, ib));
        }
        *ok = _mm_movemask_ps(bad) == 0;
        return i;
    }
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    #include <immintrin.h>
    /* The same with AVX2 where the processor has it (chosen at run time). */
    __attribute__((target("avx2")))
    static Py_ssize_t akf_f32_to_s16_avx2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) {
        const __m256 one = _mm256_set1_ps(1.0f);
        const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        const __m256 scale = _mm256_set1_ps(32768.0f);
        __m256 bad = _mm256_setzero_ps();
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256 a = _mm256_loadu_ps(src + i), b = _mm256_loadu_ps(src + i + 8);
            bad = _mm256_or_ps(bad, _mm256_or_ps(
                _mm256_cmp_ps(_mm256_and_ps(a, absmask), one, _CMP_NLE_UQ),
                _mm256_cmp_ps(_mm256_and_ps(b, absmask), one, _CMP_NLE_UQ)));
            __m256i ia = _mm256_cvtps_epi32(_mm256_mul_ps(a, scale));
            __m256i ib = _mm256_cvtps_epi32(_mm256_mul_ps(b, scale));
            /* packs works within 128-bit lanes: put the quarters back in order */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(ia, ib), 0xD8);
            _mm256_storeu_si256((__m256i*)(dst + i), p);
        }
        *ok = _mm256_movemask_ps(bad) == 0;
        return i;
    }
    static int akf_have_avx2(void) { return __builtin_cpu_supports("avx2"); }
    #else
    static Py_ssize_t akf_f32_to_s16_avx2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) {
        *ok = 1;
        return 0;
    }
    static int akf_have_avx2(void) { return 0; }
    #endif
    #else
    #define AKF_PCM_HAVE_SSE2 0
    static Py_ssize_t akf_f32_to_s16_sse2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) {
        *ok = 1;
        return 0;
    }
    static Py_ssize_t akf_f32_to_s16_avx2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) {
        *ok = 1;
        return 0;
    }
    static int akf_have_avx2(void) { return 0; }
    #endif
    """
    bint AKF_PCM_HAVE_SSE2
    Py_ssize_t akf_f32_to_s16_sse2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) noexcept nogil
    Py_ssize_t akf_f32_to_s16_avx2(const float* src, Py_ssize_t n, int16_t* dst, int* ok) noexcept nogil
    int akf_have_avx2() noexcept nogil

# A module variable, so that tests run the portable loop on an SSE2 host too
# (``_use_simd``).
cdef bint _simd = AKF_PCM_HAVE_SSE2
cdef bint _HAVE_AVX2 = AKF_PCM_HAVE_SSE2 and akf_have_avx2()
cdef bint _avx2 = _HAVE_AVX2


def _use_simd(str which):
    """Tests only: run the float32 loop with ``"avx2"``, ``"sse2"`` or
    ``"portable"`` code (as far as the build and the processor have them);
    returns the one now in use."""
    global _simd, _avx2
    _simd = which in ("avx2", "sse2") and AKF_PCM_HAVE_SSE2
    _avx2 = which == "avx2" and _HAVE_AVX2
    return "avx2" if _avx2 else ("sse2" if _simd else "portable")

# Adding then subtracting 1.5 * 2**23 (float) or 1.5 * 2**52 (double) rounds
# to the nearest integer with ties to even (IEEE round-to-nearest), exactly
# as numpy.rint does, for every |y| <= 2**22; ours are at most 32768.
cdef float _MAGIC_F = 12582912.0
# float constants, so that the float loop stays in float (a double literal
# would promote it, and the rounding trick needs the float sum).
cdef float _ONE_F = 1.0
cdef float _NEG1_F = -1.0
cdef float _ZERO_F = 0.0
cdef float _SCALE_F = 32768.0
cdef float _TOP_F = 32767.0
cdef float _BOT_F = -32768.0
cdef double _MAGIC_D = 6755399441055744.0


cdef inline uint16_t _bswap16(uint16_t v) noexcept nogil:
    return <uint16_t>((v >> 8) | (v << 8))


cdef inline uint32_t _bswap32(uint32_t v) noexcept nogil:
    return ((v >> 24) | ((v >> 8) & 0xFF00u) | ((v << 8) & 0xFF0000u) | (v << 24))


cdef inline uint64_t _bswap64(uint64_t v) noexcept nogil:
    return (<uint64_t>_bswap32(<uint32_t>v) << 32) | _bswap32(<uint32_t>(v >> 32))


cdef Py_ssize_t _f32_contig(const float* src, Py_ssize_t n, int16_t* dst) noexcept nogil:
    # One branch-free pass in float (the scale by 2**15 is exact): scale,
    # round half to even, limit to [-32768, 32767], and note whether every
    # sample was inside [-1, 1].  A sample above 1 (below -1) is then already
    # 32767 (-32768), as limiting it to [-1, 1] first would give; only a NaN
    # (32767 here) needs the second pass, which also counts.
    cdef Py_ssize_t i = 0
    cdef int32_t ok = 1
    cdef int simd_ok = 1
    cdef float f, y
    if _avx2:
        i = akf_f32_to_s16_avx2(src, n, dst, &simd_ok)
        ok = simd_ok
    if _simd:
        i += akf_f32_to_s16_sse2(src + i, n - i, dst + i, &simd_ok)
        ok &= simd_ok
    for i in range(i, n):
        f = src[i]
        ok &= (f >= _NEG1_F) & (f <= _ONE_F)
        y = (f * _SCALE_F + _MAGIC_F) - _MAGIC_F
        y = y if y < _TOP_F else _TOP_F
        y = y if y > _BOT_F else _BOT_F
        dst[i] = <int16_t><int32_t>y
    if ok:
        return 0
    cdef Py_ssize_t clipped = 0
    for i in range(n):
        f = src[i]
        if not (f >= _NEG1_F and f <= _ONE_F):
            clipped += 1
            dst[i] = 32767 if f > _ONE_F else (-32768 if f < _NEG1_F else 0)
    return clipped


cdef Py_ssize_t _f64_contig(const double* src, Py_ssize_t n, int16_t* dst) noexcept nogil:
    # As _f32_contig, in double (64-bit lanes throughout, so that it vectorises).
    cdef Py_ssize_t i
    cdef int64_t ok = 1
    cdef double f, y
    for i in range(n):
        f = src[i]
        ok &= (f >= -1.0) & (f <= 1.0)
        y = (f * 32768.0 + _MAGIC_D) - _MAGIC_D
        y = y if y < 32767.0 else 32767.0
        y = y if y > -32768.0 else -32768.0
        dst[i] = <int16_t><int32_t>y
    if ok:
        return 0
    cdef Py_ssize_t clipped = 0
    for i in range(n):
        f = src[i]
        if not (f >= -1.0 and f <= 1.0):
            clipped += 1
            if f != f:
                dst[i] = 0
    return clipped


cdef inline int16_t _round_clip(double f, Py_ssize_t* clipped) noexcept nogil:
    cdef double y
    if not (f >= -1.0 and f <= 1.0):
        clipped[0] += 1
        if f > 1.0:
            f = 1.0
        elif f < -1.0:
            f = -1.0
        else:
            f = 0.0
    y = (f * 32768.0 + _MAGIC_D) - _MAGIC_D
    if y > 32767.0:
        y = 32767.0
    return <int16_t><int32_t>y


cdef Py_ssize_t _floats_strided(
    const char* src, Py_ssize_t stride, Py_ssize_t n, int itemsize, bint swap, int16_t* dst
) noexcept nogil:
    # Any strides, either byte order: one item at a time through memcpy.
    cdef Py_ssize_t i
    cdef Py_ssize_t clipped = 0
    cdef uint32_t u32
    cdef uint64_t u64
    cdef float f
    cdef double d
    for i in range(n):
        if itemsize == 4:
            memcpy(&u32, src + i * stride, 4)
            if swap:
                u32 = _bswap32(u32)
            memcpy(&f, &u32, 4)
            d = f
        else:
            memcpy(&u64, src + i * stride, 8)
            if swap:
                u64 = _bswap64(u64)
            memcpy(&d, &u64, 8)
        dst[i] = _round_clip(d, &clipped)
    return clipped


cdef void _int16_strided(
    const char* src, Py_ssize_t stride, Py_ssize_t n, bint swap, int16_t* dst
) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint16_t u
    for i in range(n):
        memcpy(&u, src + i * stride, 2)
        if swap:
            u = _bswap16(u)
        dst[i] = <int16_t>u


cdef object _convert(
    const char* src, char code, bint little, Py_ssize_t n, Py_ssize_t stride,
    object stats, bytearray scratch,
):
    """``n`` items of ``code`` (h, f, d) at ``src`` as s16le: new bytes, or
    ``scratch`` resized to them."""
    cdef object out
    cdef int16_t* dst
    if scratch is not None and PyByteArray_GET_SIZE(scratch) != n * 2:
        try:
            PyByteArray_Resize(scratch, n * 2)
        except BufferError:  # the caller still holds a view of the last result
            scratch = None
    if scratch is None:
        out = PyBytes_FromStringAndSize(NULL, n * 2)
        dst = <int16_t*>PyBytes_AS_STRING(out)
    else:
        out = scratch
        dst = <int16_t*>PyByteArray_AS_STRING(scratch)
    cdef bint swap = little == _BIG  # the items are not in host order
    cdef Py_ssize_t clipped = 0
    cdef Py_ssize_t i
    # The GIL stays held: for a chunk of a few hundred samples, giving it up
    # would cost more than the loop.
    if code == b'h':
        _int16_strided(src, stride, n, swap, dst)
    elif code == b'f' and not swap and stride == 4:
        clipped = _f32_contig(<const float*>src, n, dst)
    elif code == b'd' and not swap and stride == 8:
        clipped = _f64_contig(<const double*>src, n, dst)
    else:
        clipped = _floats_strided(src, stride, n, 4 if code == b'f' else 8, swap, dst)
    if _BIG:
        for i in range(n):
            dst[i] = <int16_t>_bswap16(<uint16_t>dst[i])
    if clipped and stats is not None:
        stats.samples_clipped += clipped
    return out


cdef object _from_ndarray(cnp.ndarray arr, str what, object stats, bytearray scratch):
    cdef int nd = cnp.PyArray_NDIM(arr)
    cdef cnp.npy_intp* shape = cnp.PyArray_DIMS(arr)
    cdef int typenum = cnp.PyArray_TYPE(arr)
    cdef char code
    cdef bint little
    if typenum == cnp.NPY_INT16:
        code = b'h'
    elif typenum == cnp.NPY_FLOAT32:
        code = b'f'
    elif typenum == cnp.NPY_FLOAT64:
        code = b'd'
    else:
        return _py.as_pcm16(arr, what=what, stats=stats)
    if not (nd == 1 or (nd == 2 and shape[1] == 1)):
        return _py.as_pcm16(arr, what=what, stats=stats)
    little = cnp.PyArray_ISNOTSWAPPED(arr) != _BIG
    if code == b'h' and little and cnp.PyArray_IS_C_CONTIGUOUS(arr):
        return arr
    return _convert(
        <const char*>cnp.PyArray_DATA(arr), code, little, shape[0],
        cnp.PyArray_STRIDES(arr)[0], stats, scratch,
    )


cdef object _to_pcm16(object data, str what, object stats, bytearray scratch):
    cdef type cls = type(data)
    if cls is bytes or cls is bytearray:
        return data
    if cnp.PyArray_Check(data):
        return _from_ndarray(<cnp.ndarray>data, what, stats, scratch)
    cdef Py_buffer view
    cdef const char* fmt
    cdef char order, code
    cdef bint little
    cdef object result = None
    try:
        PyObject_GetBuffer(data, &view, PyBUF_RECORDS_RO)
    except Exception:
        return _py.as_pcm16(data, what=what, stats=stats)
    try:
        fmt = view.format
        if fmt == NULL:
            fmt = b"B"
        order = fmt[0]
        little = not _BIG
        if order in b"@=<>!":
            if order == b'<':
                little = True
            elif order == b'>' or order == b'!':
                little = False
            fmt += 1
        code = fmt[0]
        if code != 0 and fmt[1] == 0:
            if view.itemsize == 1 and (code == b'B' or code == b'b' or code == b'c'):
                if PyBuffer_IsContiguous(&view, b'C'):
                    result = data
            elif (
                ((code == b'h' and view.itemsize == 2)
                 or (code == b'f' and view.itemsize == 4)
                 or (code == b'd' and view.itemsize == 8))
                and (view.ndim == 1 or (view.ndim == 2 and view.shape[1] == 1))
                and view.suboffsets == NULL
            ):
                if code == b'h' and little and PyBuffer_IsContiguous(&view, b'C'):
                    result = data
                else:
                    result = _convert(
                        <const char*>view.buf, code, little, view.shape[0],
                        view.strides[0], stats, scratch,
                    )
    finally:
        PyBuffer_Release(&view)
    if result is None:
        return _py.as_pcm16(data, what=what, stats=stats)
    return result


def as_pcm16(object data, *, str what="pcm", object stats=None):
    """``data`` as s16le mono PCM: the object itself when it already is
    (bytes-likes, little-endian contiguous int16), else new ``bytes``.

    See the module docstring of ``_pcm_py`` for what is taken and how floats
    are rounded; ``stats.samples_clipped`` counts clipped float samples.
    Raises TypeError / ValueError (nothing converted).
    """
    return _to_pcm16(data, what, stats, None)


@cython.final
cdef class Pcm16Input:
    """The input conversion of one producer: :meth:`convert` is
    :func:`as_pcm16` with the clipping counted in :attr:`samples_clipped`,
    converting into a scratch buffer that is reused from call to call.

    The bytearray :meth:`convert` returns for converted input is that
    scratch: valid until the next call, for handing straight to a call that
    copies it (``yield_audio_data``); keep it and it changes under you.
    One thread at a time (the producer's lock); ``samples_clipped`` may be
    read from any thread.
    """

    cdef readonly str what
    cdef public object samples_clipped
    cdef bytearray _scratch

    def __init__(self, what="pcm"):
        if not isinstance(what, str):
            raise TypeError(f"what must be a str, got {type(what).__name__}")
        self.what = what
        self.samples_clipped = 0
        self._scratch = bytearray()

    def convert(self, data):
        """``data`` as s16le mono PCM (see :func:`as_pcm16`): the object
        itself when it already is, else the scratch bytearray."""
        return _to_pcm16(data, self.what, self, self._scratch)

    def __repr__(self):
        return f"Pcm16Input(what={self.what!r}, samples_clipped={self.samples_clipped})"


def apply_volume_into(object buf, object volume):
    """Scale the samples of ``buf`` (a writable C-contiguous native int16
    buffer) in place: ``x -> (x * g + 16384) >> 15`` with
    ``g = volume_gain(volume)``.  No allocation."""
    cdef int32_t g = volume_gain(volume)
    cdef Py_buffer view
    cdef int16_t* p
    cdef Py_ssize_t i, n
    cdef const char* fmt
    cdef bint ok = False
    try:
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
    except Exception:
        return _py.apply_volume_into(buf, volume)  # raises the same error
    try:
        fmt = view.format
        if fmt != NULL and (fmt[0] == b'=' or fmt[0] == b'@' or fmt[0] == (b'>' if _BIG else b'<')):
            fmt += 1
        if fmt != NULL and fmt[0] == b'h' and fmt[1] == 0 and view.itemsize == 2:
            ok = True
            p = <int16_t*>view.buf
            n = view.len // 2
            if g != GAIN_ONE:
                _scale(p, n, g)
    finally:
        PyBuffer_Release(&view)
    if not ok:
        _py.apply_volume_into(buf, volume)


cdef void _scale(int16_t* p, Py_ssize_t n, int32_t g) noexcept nogil:
    # The read path's volume, mirrored in the sync engine: integer only.
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = <int16_t>((<int32_t>p[i] * g + 16384) >> 15)

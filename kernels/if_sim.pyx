# Integrate-and-fire spike-camera simulator kernel (private: use sci_edge.sim).
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, uint64_t, int64_t

cdef extern from "if_sim_core.h" nogil:
    int SCI_IF_BLOCK
    void sci_if_block(int64_t i0, int n, int64_t npix, const float *frames, int64_t nframes,
                      const float *prev, int k, const float *gain, const float *offset,
                      int use_offset, const float *thresh, float *v, int hard, float q,
                      uint64_t seed, int64_t step0, uint8_t *out, int packed)
    const char *sci_if_simd_name()
    int sci_if_simd_enabled


def block_size():
    return SCI_IF_BLOCK


def simd_variant():
    """The block loop used for noise-free input: "avx2" or "generic"."""
    return sci_if_simd_name().decode()


def set_simd(bint enabled):
    """Allow (default) or forbid the SIMD block loop; returns the previous setting.
    For tests and benchmarks that compare the loops; not thread-safe."""
    global sci_if_simd_enabled
    old = bool(sci_if_simd_enabled)
    sci_if_simd_enabled = 1 if enabled else 0
    return old


simd_variant()  # detect the CPU once, before any parallel call


def integrate(const float[:, ::1] frames, const float[::1] prev, bint has_prev,
              int steps_per_frame, const float[::1] gain, const float[::1] offset,
              bint use_offset, const float[::1] thresh, float[::1] v, bint hard_reset,
              float photon_q, uint64_t seed, int64_t step0, uint8_t[:, ::1] out,
              bint packed, int num_threads):
    """Advance the membrane potential ``v`` (updated in place) over ``frames``
    (nframes, npix) and write spikes into ``out``. Shapes are checked by the
    Python wrapper; this function trusts them."""
    cdef int64_t npix = frames.shape[1]
    cdef int64_t nframes = frames.shape[0]
    cdef int64_t nblocks = (npix + SCI_IF_BLOCK - 1) // SCI_IF_BLOCK
    cdef int64_t blk, i0
    cdef int n
    cdef const float *prev_ptr = &prev[0] if has_prev else NULL
    cdef int threads = num_threads if num_threads > 0 else 1
    if nframes == 0 or npix == 0:
        return
    with nogil:
        for blk in prange(nblocks, schedule="dynamic", num_threads=threads):
            i0 = blk * SCI_IF_BLOCK
            n = <int>min(<int64_t>SCI_IF_BLOCK, npix - i0)
            sci_if_block(i0, n, npix, &frames[0, 0], nframes, prev_ptr, steps_per_frame,
                         &gain[0], &offset[0], use_offset, &thresh[0], &v[0], hard_reset,
                         photon_q, seed, step0, &out[0, 0], packed)


def normal_draws(uint64_t seed, int64_t step, int64_t npix):
    """The photon-noise normal draws for one step (for tests of the reference RNG)."""
    import numpy as np
    cdef float[::1] z = np.empty(npix, dtype=np.float32)
    cdef int64_t i
    for i in range(npix):
        z[i] = _normal(seed, step, i)
    return np.asarray(z)


cdef extern from "sci_rng.h" nogil:
    uint64_t sci_hash3(uint64_t seed, uint64_t step, uint64_t pixel)
    float sci_normal(uint64_t h)

cdef inline float _normal(uint64_t seed, int64_t step, int64_t pixel) noexcept nogil:
    return sci_normal(sci_hash3(seed, <uint64_t>step, <uint64_t>pixel))

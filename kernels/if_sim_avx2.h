/* AVX2 version of the noise-free integrate-and-fire block loop (x86-64 only).
 *
 * Same arithmetic as sci_if_step, one IEEE float32 operation at a time and in
 * the same order (the intrinsics are mul, mul, add, mul[, add], add, compare,
 * sub; no FMA), so the spikes are bit-identical to the generic loop and to
 * sci_edge.sim.reference. What differs is the schedule:
 *  - tile-major: a tile of SCI_AVX2_TILE pixels runs through all steps of a
 *    frame with its membrane potential held in registers (the generic loop
 *    loads and stores v every step);
 *  - the compare masks go straight to the output: four masks are packed into
 *    32 bytes of 0/1 (packs + permute) or, for bit-packed output, into bits by
 *    movemask, so there is no byte buffer and no separate packing pass;
 *  - the interpolation weights a_j = (k-j)/k and b_j = j/k (the same float32
 *    divisions as the reference) are computed once per frame and block for
 *    up to SCI_AVX2_WCHUNK steps, not per step and tile.
 * Photon noise is not vectorised: with it sci_if_block takes the generic loop.
 * The soft reset v - (fire ? thresh : 0) equals fire ? v - thresh : v exactly
 * (x - 0.0f == x), and the hard reset is an and-not of the mask.
 * Pixels past the last full tile of a block (only in the image's last block)
 * go through the generic sci_if_step.
 */
#ifndef SCI_IF_SIM_AVX2_H
#define SCI_IF_SIM_AVX2_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SCI_HAVE_AVX2_KERNEL 1
#include <immintrin.h>

#ifndef SCI_AVX2_NV
/* Vectors of 8 pixels per tile, 4 or 8. 8 (64 pixels) measured best: a step
 * of a tile then writes one whole cache line of uint8 output. */
#define SCI_AVX2_NV 8
#endif
#define SCI_AVX2_TILE (8 * SCI_AVX2_NV)
#define SCI_AVX2_WCHUNK 64 /* interpolation weights computed per chunk of steps */
#define SCI_AVX2_TARGET __attribute__((target("avx2")))
#define SCI_AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* 1 when the CPU (and OS) supports AVX2. */
static int sci_cpu_has_avx2(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}

/* Four compare masks (pixels 0-7, 8-15, 16-23, 24-31) to 32 bytes of 0/1. */
SCI_AVX2_INLINE __m256i sci_avx2_masks_to_bytes(__m256 m0, __m256 m1, __m256 m2, __m256 m3)
{
    __m256i p01 = _mm256_packs_epi32(_mm256_castps_si256(m0), _mm256_castps_si256(m1));
    __m256i p23 = _mm256_packs_epi32(_mm256_castps_si256(m2), _mm256_castps_si256(m3));
    /* dwords now hold pixels 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31 */
    __m256i b = _mm256_packs_epi16(p01, p23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    return _mm256_and_si256(b, _mm256_set1_epi8(1));
}

/* Steps [j0, j1) of one tile of SCI_AVX2_NV vectors at pixel x, writing rows
 * from dst on (row_bytes apart), v held in registers throughout.
 * INTERP/OFFSET/HARD/PACKED are compile-time constants at every call site. */
SCI_AVX2_INLINE void sci_avx2_tile_steps(int j0, int j1, const float *wa, const float *wb,
                                         const float *L0, const float *L1, const float *g,
                                         const float *o, const float *th, float *vp,
                                         uint8_t *dst, int64_t row_bytes, const int INTERP,
                                         const int OFFSET, const int HARD, const int PACKED)
{
    __m256 vr[SCI_AVX2_NV];
    int r;
#pragma GCC unroll 8
    for (r = 0; r < SCI_AVX2_NV; ++r) vr[r] = _mm256_loadu_ps(vp + 8 * r);
    for (int j = j0; j < j1; ++j, dst += row_bytes) {
        __m256 va = _mm256_setzero_ps(), vb = va;
        if (INTERP) {
            va = _mm256_broadcast_ss(wa + j);
            vb = _mm256_broadcast_ss(wb + j);
        }
#pragma GCC unroll 2
        for (int q = 0; q < SCI_AVX2_NV / 4; ++q) {
            __m256 m[4];
#pragma GCC unroll 4
            for (int u = 0; u < 4; ++u) {
                int e = 8 * (4 * q + u);
                __m256 p = INTERP ? _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(L0 + e), va),
                                                  _mm256_mul_ps(_mm256_loadu_ps(L1 + e), vb))
                                  : _mm256_loadu_ps(L1 + e);
                p = _mm256_mul_ps(_mm256_loadu_ps(g + e), p);
                if (OFFSET) p = _mm256_add_ps(p, _mm256_loadu_ps(o + e));
                __m256 t = _mm256_loadu_ps(th + e);
                __m256 vv = _mm256_add_ps(vr[4 * q + u], p);
                m[u] = _mm256_cmp_ps(vv, t, _CMP_GE_OQ);
                vr[4 * q + u] = HARD ? _mm256_andnot_ps(m[u], vv)
                                     : _mm256_sub_ps(vv, _mm256_and_ps(m[u], t));
            }
            if (PACKED) {
                uint32_t bits = (uint32_t)_mm256_movemask_ps(m[0]) |
                                ((uint32_t)_mm256_movemask_ps(m[1]) << 8) |
                                ((uint32_t)_mm256_movemask_ps(m[2]) << 16) |
                                ((uint32_t)_mm256_movemask_ps(m[3]) << 24);
                memcpy(dst + 4 * q, &bits, 4); /* little-endian: pixel i is bit i%8 of byte i/8 */
            } else {
                _mm256_storeu_si256((__m256i *)(dst + 32 * q),
                                    sci_avx2_masks_to_bytes(m[0], m[1], m[2], m[3]));
            }
        }
    }
#pragma GCC unroll 8
    for (r = 0; r < SCI_AVX2_NV; ++r) _mm256_storeu_ps(vp + 8 * r, vr[r]);
}

/* The full tiles [0, nv) of a block through steps [j0, j1) of one frame. */
SCI_AVX2_INLINE void sci_avx2_tiles(int nv, int j0, int j1, const float *wa, const float *wb,
                                    const float *L0, const float *L1, const float *g,
                                    const float *o, const float *th, float *vb,
                                    uint8_t *dst0, int64_t row_bytes, const int INTERP,
                                    const int OFFSET, const int HARD, const int PACKED)
{
    for (int x = 0; x < nv; x += SCI_AVX2_TILE)
        sci_avx2_tile_steps(j0, j1, wa, wb, L0 ? L0 + x : NULL, L1 + x, g + x, o + x, th + x,
                            vb + x, dst0 + (PACKED ? x / 8 : x), row_bytes, INTERP, OFFSET,
                            HARD, PACKED);
}

#define SCI_AVX2_DISPATCH(INTERP)                                                                \
    do {                                                                                         \
        if (use_offset) {                                                                        \
            if (hard) {                                                                          \
                if (packed) sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 1, 1, 1); \
                else        sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 1, 1, 0); \
            } else {                                                                             \
                if (packed) sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 1, 0, 1); \
                else        sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 1, 0, 0); \
            }                                                                                    \
        } else {                                                                                 \
            if (hard) {                                                                          \
                if (packed) sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 0, 1, 1); \
                else        sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 0, 1, 0); \
            } else {                                                                             \
                if (packed) sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 0, 0, 1); \
                else        sci_avx2_tiles(nv, j0, j1, wa, wb, L0, L1, g, o, th, vb, dst, row_bytes, INTERP, 0, 0, 0); \
            }                                                                                    \
        }                                                                                        \
    } while (0)

/* Noise-free block loop; arguments as sci_if_block (photon noise: not here). */
SCI_AVX2_TARGET static void sci_if_block_avx2(int64_t i0, int n, int64_t npix, const float *frames,
                                              int64_t nframes, const float *prev, int k,
                                              const float *gain, const float *offset,
                                              int use_offset, const float *thresh, float *v,
                                              int hard, uint8_t *out, int packed)
{
    uint8_t sbuf[SCI_IF_BLOCK];
    float wa[SCI_AVX2_WCHUNK], wb[SCI_AVX2_WCHUNK];
    int64_t row_bytes = packed ? (npix + 7) / 8 : npix;
    int nv = n - n % SCI_AVX2_TILE;
    const float *g = gain + i0, *o = offset + i0, *th = thresh + i0;
    float *vb = v + i0;
    int64_t t = 0;
    for (int64_t f = 0; f < nframes; ++f) {
        const float *L1 = frames + f * npix + i0;
        const float *L0 = (f > 0) ? frames + (f - 1) * npix + i0 : (prev ? prev + i0 : NULL);
        int nsteps = L0 ? k : 1;
        if (nv > 0) {
            /* steps 1..k-1 interpolate; weights for up to SCI_AVX2_WCHUNK steps at a time */
            for (int c = 1; L0 && c < k; c += SCI_AVX2_WCHUNK) {
                int j0 = 0, j1 = (k - c < SCI_AVX2_WCHUNK) ? k - c : SCI_AVX2_WCHUNK;
                for (int j = 0; j < j1; ++j) {
                    wb[j] = (float)(c + j) / (float)k;
                    wa[j] = (float)(k - (c + j)) / (float)k;
                }
                uint8_t *dst = out + (t + c - 1) * row_bytes + (packed ? i0 / 8 : i0);
                SCI_AVX2_DISPATCH(1);
            }
            { /* the last step sees L1 itself */
                int j0 = 0, j1 = 1;
                uint8_t *dst = out + (t + nsteps - 1) * row_bytes + (packed ? i0 / 8 : i0);
                SCI_AVX2_DISPATCH(0);
            }
        }
        if (nv < n) { /* tail pixels of the image's last block */
            int m = n - nv;
            for (int j = 1; j <= nsteps; ++j) {
                int interp = (L0 != NULL) && (j < k);
                float b = (float)j / (float)k, a = (float)(k - j) / (float)k;
                int64_t row = (t + j - 1) * row_bytes;
                uint8_t *dst = packed ? sbuf : out + row + i0 + nv;
                sci_if_step(m, L0 ? L0 + nv : NULL, L1 + nv, a, b, interp, g + nv, o + nv,
                            use_offset, th + nv, vb + nv, hard, dst);
                if (packed) sci_pack_bits(m, sbuf, out + row + (i0 + nv) / 8);
            }
        }
        t += nsteps;
    }
}

#endif /* x86-64 */
#endif

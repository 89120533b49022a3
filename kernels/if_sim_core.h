/* Integrate-and-fire spike-camera core, one block of pixels at a time.
 *
 * Per pixel and spike step (all float32, in this order, no FMA):
 *   I = L0*a + L1*b            linear interpolation between frames (a+b=1)
 *   p = gain*I [+ offset]      alpha (times PRNU) and dark current
 *   p = max(p + sqrt(p*q)*z,0) photon noise, only when q > 0
 *   v = v + p
 *   spike = v >= thresh;  on a spike v = 0 (hard) or v - thresh (soft)
 * sci_edge.sim.reference implements the same arithmetic in numpy.
 */
#ifndef SCI_IF_SIM_CORE_H
#define SCI_IF_SIM_CORE_H
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "sci_rng.h"

#define SCI_IF_BLOCK 512 /* pixels per block; a multiple of 8 for packing */

#if defined(__GNUC__) || defined(__clang__)
#define SCI_RESTRICT __restrict__
#else
#define SCI_RESTRICT
#endif

/* The generic block loop: on x86-64 (GCC, Linux) an AVX2 copy of it is built
 * besides the baseline one and picked at load time (function multi-versioning);
 * elsewhere (aarch64 has NEON in its baseline) the plain build is used. It runs
 * photon noise, and everything on CPUs without AVX2; noise-free input on an
 * AVX2 CPU takes the hand-vectorised loop of if_sim_avx2.h (see sci_if_block
 * at the end). Results are identical: the arithmetic is IEEE float32 either
 * way and FMA contraction is off. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define SCI_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define SCI_MULTIVERSION
#endif

/* The update of one pixel i, given its charge p for this step. */
#define SCI_IF_FIRE(p)                                   \
    do {                                                 \
        float vv = v[i] + (p);                           \
        uint8_t fire = vv >= thresh[i];                  \
        float r = hard ? 0.0f : vv - thresh[i];          \
        v[i] = fire ? r : vv;                            \
        s[i] = fire;                                     \
    } while (0)

/* One spike step for n pixels; writes 0/1 into s. */
static inline void sci_if_step(int n, const float *SCI_RESTRICT L0, const float *SCI_RESTRICT L1,
                               float a, float b, int interp,
                               const float *SCI_RESTRICT gain, const float *SCI_RESTRICT offset,
                               int use_offset, const float *SCI_RESTRICT thresh,
                               float *SCI_RESTRICT v, int hard, uint8_t *SCI_RESTRICT s)
{
    int i;
    /* Separate loops per mode so each one vectorises without branches. */
    if (interp && use_offset) {
        for (i = 0; i < n; ++i) SCI_IF_FIRE(gain[i] * (L0[i] * a + L1[i] * b) + offset[i]);
    } else if (interp) {
        for (i = 0; i < n; ++i) SCI_IF_FIRE(gain[i] * (L0[i] * a + L1[i] * b));
    } else if (use_offset) {
        for (i = 0; i < n; ++i) SCI_IF_FIRE(gain[i] * L1[i] + offset[i]);
    } else {
        for (i = 0; i < n; ++i) SCI_IF_FIRE(gain[i] * L1[i]);
    }
}

/* Same step with photon (shot) noise: not vectorised, off by default. */
static inline void sci_if_step_photon(int n, const float *L0, const float *L1, float a, float b,
                                      int interp, const float *gain, const float *offset,
                                      int use_offset, const float *thresh, float *v, int hard,
                                      uint8_t *s, float q, uint64_t seed, uint64_t step,
                                      uint64_t pixel0)
{
    for (int i = 0; i < n; ++i) {
        float I = interp ? (L0[i] * a + L1[i] * b) : L1[i];
        float p = gain[i] * I;
        if (use_offset) p = p + offset[i];
        float z = sci_normal(sci_hash3(seed, step, pixel0 + (uint64_t)i));
        float var = p * q;
        float sd = var > 0.0f ? sqrtf(var) : 0.0f;
        p = p + sd * z;
        p = p > 0.0f ? p : 0.0f;
        SCI_IF_FIRE(p);
    }
}

/* LSB-first bit packing of n 0/1 bytes (n a multiple of 8 except at the end).
 * On little-endian machines eight 0/1 bytes read as one uint64 x give the
 * packed byte as (x * 0x0102040810204080) >> 56: each byte's bit lands in its
 * own place of the top byte, with no carries since every partial is 0 or 1. */
static inline void sci_pack_bits(int n, const uint8_t *SCI_RESTRICT s, uint8_t *SCI_RESTRICT out)
{
    int full = n / 8, q;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (q = 0; q < full; ++q) {
        uint64_t x;
        memcpy(&x, s + 8 * q, 8);
        out[q] = (uint8_t)((x * 0x0102040810204080ULL) >> 56);
    }
#else
    for (q = 0; q < full; ++q) {
        const uint8_t *t = s + 8 * q;
        out[q] = (uint8_t)(t[0] | (t[1] << 1) | (t[2] << 2) | (t[3] << 3) |
                           (t[4] << 4) | (t[5] << 5) | (t[6] << 6) | (t[7] << 7));
    }
#endif
    if (n % 8) {
        uint8_t byte = 0;
        for (int r = 0; r < n % 8; ++r) byte |= (uint8_t)(s[8 * full + r] << r);
        out[full] = byte;
    }
}

/* Run all steps of a chunk for pixels [i0, i0+n) of an image of npix pixels.
 * frames: (nframes, npix). prev: the frame before frames[0], or NULL.
 * Without prev, frames[0] gives one step of its own; every later frame gives
 * k steps interpolated from the frame before it (the last of them equals it).
 * out: (steps, npix) bytes, or (steps, ceil(npix/8)) when packed. */
SCI_MULTIVERSION static void sci_if_block_generic(int64_t i0, int n, int64_t npix, const float *frames, int64_t nframes,
                         const float *prev, int k, const float *gain, const float *offset,
                         int use_offset, const float *thresh, float *v, int hard, float q,
                         uint64_t seed, int64_t step0, uint8_t *out, int packed)
{
    uint8_t sbuf[SCI_IF_BLOCK];
    int64_t row_bytes = packed ? (npix + 7) / 8 : npix;
    int64_t t = 0;
    const float *g = gain + i0, *o = offset + i0, *th = thresh + i0;
    float *vb = v + i0;
    for (int64_t f = 0; f < nframes; ++f) {
        const float *L1 = frames + f * npix + i0;
        const float *L0 = (f > 0) ? frames + (f - 1) * npix + i0 : (prev ? prev + i0 : NULL);
        int nsteps = L0 ? k : 1;
        for (int j = 1; j <= nsteps; ++j, ++t) {
            int interp = (L0 != NULL) && (j < k);
            float b = (float)j / (float)k;
            float a = (float)(k - j) / (float)k;
            uint8_t *dst = packed ? sbuf : out + t * row_bytes + i0;
            if (q > 0.0f)
                sci_if_step_photon(n, L0, L1, a, b, interp, g, o, use_offset, th, vb, hard, dst,
                                   q, seed, (uint64_t)(step0 + t), (uint64_t)i0);
            else
                sci_if_step(n, L0, L1, a, b, interp, g, o, use_offset, th, vb, hard, dst);
            if (packed) sci_pack_bits(n, sbuf, out + t * row_bytes + i0 / 8);
        }
    }
}

#include "if_sim_avx2.h"

/* Which block loop runs: 1 = the AVX2 one where the CPU has it (default),
 * 0 = always the generic one (tests compare the two). */
static int sci_if_simd_enabled = 1;

/* "avx2" or "generic": the loop sci_if_block uses for noise-free input. */
static const char *sci_if_simd_name(void)
{
#ifdef SCI_HAVE_AVX2_KERNEL
    if (sci_if_simd_enabled && sci_cpu_has_avx2()) return "avx2";
#else
    (void)sci_if_simd_enabled;
#endif
    return "generic";
}

static void sci_if_block(int64_t i0, int n, int64_t npix, const float *frames, int64_t nframes,
                         const float *prev, int k, const float *gain, const float *offset,
                         int use_offset, const float *thresh, float *v, int hard, float q,
                         uint64_t seed, int64_t step0, uint8_t *out, int packed)
{
#ifdef SCI_HAVE_AVX2_KERNEL
    if (!(q > 0.0f) && sci_if_simd_enabled && sci_cpu_has_avx2()) {
        sci_if_block_avx2(i0, n, npix, frames, nframes, prev, k, gain, offset, use_offset, thresh,
                          v, hard, out, packed);
        return;
    }
#endif
    sci_if_block_generic(i0, n, npix, frames, nframes, prev, k, gain, offset, use_offset, thresh,
                         v, hard, q, seed, step0, out, packed);
}

#endif

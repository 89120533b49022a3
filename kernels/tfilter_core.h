/* Binarized temporal filters over bit-packed time (the end side's first layer).
 *
 * A pixel's spikes in a window of up to 64 frames are one word, bit j = frame j.
 * A filter c has weights +1 on the bits of pos[c] and -1 on the rest of its
 * support sup[c], so its integer response is
 *     dot = popcount(s & pos) - popcount(s & sup & ~pos) = 2*popcount(s & pos) - popcount(s & sup)
 * and the float output is (float)dot * alpha[c] + bias[c] (float32, multiply
 * then add, as the torch layer sci_edge.models.binary.BinaryTemporalBank does).
 *
 * Two loops compute it: a portable one, and a SIMD one (AVX-512 VPOPCNTQ on
 * x86-64, chosen at run time; NEON on aarch64) for banks whose supports fit
 * 32 frames, which the FEM's 13-frame bank does. Both visit a row in tiles,
 * filter by filter within a tile: the channel planes of the output are 4 KiB
 * apart, so writing one pixel's 64 channels in a row would thrash L1 sets.
 * Filters that share a support (consecutive in the bank, as the FEM lays it
 * out) share its popcount.
 */
#ifndef SCI_TFILTER_CORE_H
#define SCI_TFILTER_CORE_H
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define SCI_POPCOUNT64(x) __builtin_popcountll(x)
#else
static inline int SCI_POPCOUNT64(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int)((x * 0x0101010101010101ULL) >> 56);
}
#endif

/* x86-64 baseline has no POPCNT instruction: add clones that use it. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define SCI_TF_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "popcnt", "default")))
#else
#define SCI_TF_MULTIVERSION
#endif

/* ------------------------------------------------------------------ packing */

/* Pack one row of n pixels whose frames are frame_stride bytes apart (pixels
 * contiguous): out[x] bit j = first[j*frame_stride + x] & 1. Blocks of 64
 * pixels keep the words in registers across the L frames. */
SCI_TF_MULTIVERSION static void sci_tfilter_pack_row(int64_t n, int L, const uint8_t *first,
                                                     int64_t frame_stride, uint64_t *out)
{
    for (int64_t x0 = 0; x0 < n; x0 += 64) {
        const int64_t nb = n - x0 < 64 ? n - x0 : 64;
        uint64_t acc[64] = {0};
        for (int j = 0; j < L; ++j) {
            const uint8_t *p = first + (int64_t)j * frame_stride + x0;
            for (int64_t k = 0; k < nb; ++k)
                acc[k] |= (uint64_t)(p[k] & 1u) << j;
        }
        for (int64_t k = 0; k < nb; ++k)
            out[x0 + k] = acc[k];
    }
}

/* ------------------------------------------------------------ portable loop */

/* Tiles of 64 pixels; EMIT(c, x0 + k, dot) stores one response. */
#define SCI_TF_PORTABLE_TILES(n, words, C, pos, sup, EMIT)                           \
    for (int64_t x0 = 0; x0 < (n); x0 += 64) {                                       \
        const int64_t nb = (n) - x0 < 64 ? (n) - x0 : 64;                             \
        const uint64_t *w_ = (words) + x0;                                           \
        int csup_[64];                                                               \
        for (int c = 0; c < (C); ++c) {                                              \
            const uint64_t p_ = (pos)[c], m_ = (sup)[c];                             \
            if (c == 0 || m_ != (sup)[c - 1])                                        \
                for (int64_t k = 0; k < nb; ++k)                                     \
                    csup_[k] = SCI_POPCOUNT64(w_[k] & m_);                           \
            for (int64_t k = 0; k < nb; ++k) {                                       \
                const int dot = 2 * SCI_POPCOUNT64(w_[k] & p_) - csup_[k];           \
                EMIT;                                                                \
            }                                                                        \
        }                                                                            \
    }

/* Filter one row of n pixel words with C filters; out is (C, plane) floats. */
SCI_TF_MULTIVERSION static void sci_tfilter_row(int64_t n, const uint64_t *words, int C,
                                                const uint64_t *pos, const uint64_t *sup,
                                                const float *alpha, const float *bias,
                                                float *out, int64_t plane)
{
    SCI_TF_PORTABLE_TILES(n, words, C, pos, sup, {
        float y = (float)dot * alpha[c];
        out[(int64_t)c * plane + x0 + k] = y + bias[c];
    });
}

/* Integer responses only, as int8 (|dot| <= 64 fits): the edge's quantized
 * next layer takes them directly, with alpha and bias folded into its scale. */
SCI_TF_MULTIVERSION static void sci_tfilter_row_int8(int64_t n, const uint64_t *words, int C,
                                                     const uint64_t *pos, const uint64_t *sup,
                                                     int8_t *out, int64_t plane)
{
    SCI_TF_PORTABLE_TILES(n, words, C, pos, sup,
                          out[(int64_t)c * plane + x0 + k] = (int8_t)dot);
}

/* ---------------------------------------------------------------- SIMD loop */
/* Each ISA gives: a vector of SCI_TF_LANES pixels in 32-bit lanes
 * (sci_tf_vec), and load / popcount-of-and / dot / two stores. The float
 * store multiplies, then adds (never fused), like the portable loop. */

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 8)
#include <immintrin.h>
#define SCI_TF_SIMD_NAME "avx512-vpopcntdq"
#define SCI_TF_LANES 16
#define SCI_TF_TARGET __attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
typedef __m512i sci_tf_vec;

static inline int sci_tfilter_simd_available(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vpopcntdq");
}

SCI_TF_TARGET static inline sci_tf_vec sci_tf_load(const uint64_t *w)
{
    __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)w));
    __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)(w + 8)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

SCI_TF_TARGET static inline sci_tf_vec sci_tf_popcnt_and(sci_tf_vec s, uint64_t mask)
{
    return _mm512_popcnt_epi32(_mm512_and_si512(s, _mm512_set1_epi32((int)(uint32_t)mask)));
}

SCI_TF_TARGET static inline sci_tf_vec sci_tf_dot(sci_tf_vec cpos, sci_tf_vec csup)
{
    return _mm512_sub_epi32(_mm512_add_epi32(cpos, cpos), csup);
}

SCI_TF_TARGET static inline void sci_tf_store_f32(float *o, sci_tf_vec dot, float a, float b)
{
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a));
    _mm512_storeu_ps(o, _mm512_add_ps(y, _mm512_set1_ps(b)));
}

SCI_TF_TARGET static inline void sci_tf_store_i8(int8_t *o, sci_tf_vec dot)
{
    _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(dot));
}

#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define SCI_TF_SIMD_NAME "neon"
#define SCI_TF_LANES 4
#define SCI_TF_TARGET
typedef uint32x4_t sci_tf_vec;

static inline int sci_tfilter_simd_available(void) { return 1; }  /* NEON is baseline */

static inline sci_tf_vec sci_tf_load(const uint64_t *w)
{
    return vcombine_u32(vmovn_u64(vld1q_u64(w)), vmovn_u64(vld1q_u64(w + 2)));
}

static inline sci_tf_vec sci_tf_popcnt_and(sci_tf_vec s, uint64_t mask)
{
    /* per-byte counts, then pairwise sums up to 32-bit lanes */
    uint8x16_t bytes = vcntq_u8(vreinterpretq_u8_u32(vandq_u32(s, vdupq_n_u32((uint32_t)mask))));
    return vpaddlq_u16(vpaddlq_u8(bytes));
}

static inline sci_tf_vec sci_tf_dot(sci_tf_vec cpos, sci_tf_vec csup)
{
    return vsubq_u32(vshlq_n_u32(cpos, 1), csup);  /* wraps to the right int32 */
}

static inline void sci_tf_store_f32(float *o, sci_tf_vec dot, float a, float b)
{
    float32x4_t y = vmulq_f32(vcvtq_f32_s32(vreinterpretq_s32_u32(dot)), vdupq_n_f32(a));
    vst1q_f32(o, vaddq_f32(y, vdupq_n_f32(b)));
}

static inline void sci_tf_store_i8(int8_t *o, sci_tf_vec dot)
{
    int16x4_t d16 = vmovn_s32(vreinterpretq_s32_u32(dot));
    int8x8_t d8 = vmovn_s16(vcombine_s16(d16, d16));
    int32_t four = vget_lane_s32(vreinterpret_s32_s8(d8), 0);
    memcpy(o, &four, 4);
}

#else
static inline int sci_tfilter_simd_available(void) { return 0; }
#endif

#ifdef SCI_TF_LANES
#define SCI_TF_MAX_TILE 8

/* One tile of T vectors (T * SCI_TF_LANES pixels), all filters; float output
 * when out_f is given, else int8 into out_i. */
SCI_TF_TARGET static inline __attribute__((always_inline)) void sci_tf_tile(
    int T, const uint64_t *words, int C, const uint64_t *pos, const uint64_t *sup,
    const float *alpha, const float *bias, float *out_f, int8_t *out_i, int64_t plane)
{
    sci_tf_vec s[SCI_TF_MAX_TILE], csup[SCI_TF_MAX_TILE];
    for (int v = 0; v < T; ++v)
        s[v] = sci_tf_load(words + SCI_TF_LANES * v);
    for (int c = 0; c < C; ++c) {
        if (c == 0 || sup[c] != sup[c - 1])
            for (int v = 0; v < T; ++v)
                csup[v] = sci_tf_popcnt_and(s[v], sup[c]);
        for (int v = 0; v < T; ++v) {
            sci_tf_vec dot = sci_tf_dot(sci_tf_popcnt_and(s[v], pos[c]), csup[v]);
            int64_t at = (int64_t)c * plane + SCI_TF_LANES * v;
            if (out_f)
                sci_tf_store_f32(out_f + at, dot, alpha[c], bias[c]);
            else
                sci_tf_store_i8(out_i + at, dot);
        }
    }
}

/* The SIMD part of a row: whole vectors only; returns how many pixels it did. */
SCI_TF_TARGET static int64_t sci_tf_row_simd(int64_t n, const uint64_t *words, int C,
                                             const uint64_t *pos, const uint64_t *sup,
                                             const float *alpha, const float *bias,
                                             float *out_f, int8_t *out_i, int64_t plane)
{
    for (int c = 0; c < C; ++c)
        if (sup[c] >> 32)
            return 0;  /* a support beyond 32 frames: the portable loop does it all */
    int64_t i = 0;
#define SCI_TF_TILE_AT(T)                                                            \
    sci_tf_tile(T, words + i, C, pos, sup, alpha, bias, out_f ? out_f + i : 0,       \
                out_i ? out_i + i : 0, plane)
    for (; i + SCI_TF_LANES * SCI_TF_MAX_TILE <= n; i += SCI_TF_LANES * SCI_TF_MAX_TILE)
        SCI_TF_TILE_AT(SCI_TF_MAX_TILE);
    if (i + SCI_TF_LANES * 4 <= n) { SCI_TF_TILE_AT(4); i += SCI_TF_LANES * 4; }
    if (i + SCI_TF_LANES * 2 <= n) { SCI_TF_TILE_AT(2); i += SCI_TF_LANES * 2; }
    if (i + SCI_TF_LANES <= n) { SCI_TF_TILE_AT(1); i += SCI_TF_LANES; }
#undef SCI_TF_TILE_AT
    return i;
}
#endif

static inline const char *sci_tfilter_simd_name(void)
{
#ifdef SCI_TF_SIMD_NAME
    if (sci_tfilter_simd_available())
        return SCI_TF_SIMD_NAME;
#endif
    return "portable";
}

/* The SIMD loop where the build and the CPU have one (callers check
 * sci_tfilter_simd_available() once), the portable loop for the rest. */
static void sci_tfilter_row_simd(int64_t n, const uint64_t *words, int C, const uint64_t *pos,
                                 const uint64_t *sup, const float *alpha, const float *bias,
                                 float *out, int64_t plane)
{
    int64_t done = 0;
#ifdef SCI_TF_LANES
    done = sci_tf_row_simd(n, words, C, pos, sup, alpha, bias, out, 0, plane);
#endif
    if (done < n)
        sci_tfilter_row(n - done, words + done, C, pos, sup, alpha, bias, out + done, plane);
}

static void sci_tfilter_row_int8_simd(int64_t n, const uint64_t *words, int C,
                                      const uint64_t *pos, const uint64_t *sup, int8_t *out,
                                      int64_t plane)
{
    int64_t done = 0;
#ifdef SCI_TF_LANES
    done = sci_tf_row_simd(n, words, C, pos, sup, 0, 0, 0, out, plane);
#endif
    if (done < n)
        sci_tfilter_row_int8(n - done, words + done, C, pos, sup, out + done, plane);
}

#endif

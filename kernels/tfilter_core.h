/* Binarized temporal filters over bit-packed time (the end side's first layer).
 *
 * A pixel's spikes in a window of up to 64 frames are one word, bit j = frame j.
 * A filter c has weights +1 on the bits of pos[c] and -1 on the rest of its
 * support sup[c], so its integer response is
 *     dot = popcount(s & pos) - popcount(s & sup & ~pos) = 2*popcount(s & pos) - popcount(s & sup)
 * and the float output is (float)dot * alpha[c] + bias[c] (float32, multiply
 * then add, as the torch layer sci_edge.models.binary.BinaryTemporalBank does).
 *
 * A portable loop computes it for any bank, and SIMD loops (AVX2, AVX-512BW,
 * AVX-512 VPOPCNTD/BITALG on x86-64, chosen at run time; NEON on aarch64) for
 * banks whose supports fit 32 frames, in 16-bit lanes where they fit 16 (the
 * FEM's 13-frame bank does). All visit a row in tiles, filter by filter
 * within a tile: the channel planes of the output are 4 KiB apart, so writing
 * one pixel's 64 channels in a row would thrash L1 sets. Filters that share a
 * support (consecutive in the bank, as the FEM lays it out) share its popcount.
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

/* ---------------------------------------------------------------- SIMD loops */
/* Per instruction set and lane width (32 bits; 16 for windows of <= 16
 * frames): a vector of pixels and load / popcount-of-and / dot / two stores,
 * then tfilter_simd.h builds the tile loop on them. The float store
 * multiplies, then adds (never fused), like the portable loop. A path names
 * an instruction set; sci_tfilter_row_on picks its lane width per bank. */
enum { SCI_TF_PORTABLE = 0, SCI_TF_AVX2 = 1, SCI_TF_AVX512BW = 2, SCI_TF_AVX512 = 3,
       SCI_TF_NEON = 4 };

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 8)
#include <immintrin.h>
#define SCI_TF_X86 1

/* AVX2 has no vector popcount: count nibbles with a byte shuffle, then sum
 * the four bytes of each lane with two multiply-adds. */
#define SCI_TF_AVX2_TARGET __attribute__((target("popcnt,avx2")))
SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2_load(const uint64_t *w)
{
    /* low 32 bits of 8 words: even dwords of each half, then the halves joined */
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m256i a = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)w), even);
    __m256i b = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(w + 4)), even);
    return _mm256_permute2x128_si256(a, b, 0x20);
}

/* popcounts of the 16-bit lanes of x: nibble counts by byte shuffle, then the
 * two bytes of each lane summed by one multiply-add */
SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2_popcnt16(__m256i x)
{
    const __m256i nibble_counts = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                                   0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i bytes = _mm256_add_epi8(
        _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(x, low4)),
        _mm256_shuffle_epi8(nibble_counts, _mm256_and_si256(_mm256_srli_epi16(x, 4), low4)));
    return _mm256_maddubs_epi16(bytes, _mm256_set1_epi8(1));
}

SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2_popcnt_and(__m256i s, uint64_t mask)
{
    __m256i x = _mm256_and_si256(s, _mm256_set1_epi32((int)(uint32_t)mask));
    return _mm256_madd_epi16(sci_tf_avx2_popcnt16(x), _mm256_set1_epi16(1));
}

SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2_dot(__m256i cpos, __m256i csup)
{
    return _mm256_sub_epi32(_mm256_add_epi32(cpos, cpos), csup);
}

SCI_TF_AVX2_TARGET static inline void sci_tf_avx2_store_f32(float *o, __m256i dot, float a,
                                                            float b)
{
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(a));
    _mm256_storeu_ps(o, _mm256_add_ps(y, _mm256_set1_ps(b)));
}

SCI_TF_AVX2_TARGET static inline void sci_tf_avx2_store_i8(int8_t *o, __m256i dot)
{
    __m128i d16 = _mm_packs_epi32(_mm256_castsi256_si128(dot), _mm256_extracti128_si256(dot, 1));
    _mm_storel_epi64((__m128i *)o, _mm_packs_epi16(d16, d16));
}

#define SCI_TF_P(name) sci_tf_avx2_##name
#define SCI_TF_VEC __m256i
#define SCI_TF_LANES 8
#define SCI_TF_LANE_BITS 32
#define SCI_TF_TARGET SCI_TF_AVX2_TARGET
#include "tfilter_simd.h"

/* Windows of <= 16 frames (the FEM's 13) fit 16-bit lanes: 16 pixels a
 * vector, and one multiply-add sums a lane's two byte counts. */
SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2w16_load(const uint64_t *w)
{
    const __m256i low16 = _mm256_set1_epi32(0xffff);   /* packus saturates: mask first */
    __m256i a = _mm256_and_si256(sci_tf_avx2_load(w), low16);
    __m256i b = _mm256_and_si256(sci_tf_avx2_load(w + 8), low16);
    /* packus works per 128-bit half: [a0-3 b0-3 | a4-7 b4-7] -> reorder the quarters */
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
}

SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2w16_popcnt_and(__m256i s, uint64_t mask)
{
    return sci_tf_avx2_popcnt16(_mm256_and_si256(s, _mm256_set1_epi16((short)(uint16_t)mask)));
}

SCI_TF_AVX2_TARGET static inline __m256i sci_tf_avx2w16_dot(__m256i cpos, __m256i csup)
{
    return _mm256_sub_epi16(_mm256_add_epi16(cpos, cpos), csup);
}

SCI_TF_AVX2_TARGET static inline void sci_tf_avx2w16_store_f32(float *o, __m256i dot, float a,
                                                               float b)
{
    sci_tf_avx2_store_f32(o, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(dot)), a, b);
    sci_tf_avx2_store_f32(o + 8, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(dot, 1)), a, b);
}

SCI_TF_AVX2_TARGET static inline void sci_tf_avx2w16_store_i8(int8_t *o, __m256i dot)
{
    __m128i d8 = _mm_packs_epi16(_mm256_castsi256_si128(dot), _mm256_extracti128_si256(dot, 1));
    _mm_storeu_si128((__m128i *)o, d8);
}

#define SCI_TF_P(name) sci_tf_avx2w16_##name
#define SCI_TF_VEC __m256i
#define SCI_TF_LANES 16
#define SCI_TF_LANE_BITS 16
#define SCI_TF_TARGET SCI_TF_AVX2_TARGET
#include "tfilter_simd.h"

/* AVX-512: load, dot and stores need only AVX-512F, so both AVX-512 sets share
 * them; they differ in the popcount. */
#define SCI_TF_AVX512F_TARGET __attribute__((target("avx512f")))
SCI_TF_AVX512F_TARGET static inline __m512i sci_tf_avx512f_load(const uint64_t *w)
{
    __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)w));
    __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)(w + 8)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

SCI_TF_AVX512F_TARGET static inline __m512i sci_tf_avx512f_dot(__m512i cpos, __m512i csup)
{
    return _mm512_sub_epi32(_mm512_add_epi32(cpos, cpos), csup);
}

SCI_TF_AVX512F_TARGET static inline void sci_tf_avx512f_store_f32(float *o, __m512i dot,
                                                                  float a, float b)
{
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a));
    _mm512_storeu_ps(o, _mm512_add_ps(y, _mm512_set1_ps(b)));
}

SCI_TF_AVX512F_TARGET static inline void sci_tf_avx512f_store_i8(int8_t *o, __m512i dot)
{
    _mm_storeu_si128((__m128i *)o, _mm512_cvtepi32_epi8(dot));
}

/* Without VPOPCNTD (Skylake-SP, Cascade Lake): AVX2's nibble counts, 16 lanes. */
#define SCI_TF_AVX512BW_TARGET __attribute__((target("popcnt,avx512f,avx512bw")))
SCI_TF_AVX512BW_TARGET static inline __m512i sci_tf_avx512bw_popcnt16(__m512i x)
{
    const __m512i nibble_counts = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i bytes = _mm512_add_epi8(
        _mm512_shuffle_epi8(nibble_counts, _mm512_and_si512(x, low4)),
        _mm512_shuffle_epi8(nibble_counts, _mm512_and_si512(_mm512_srli_epi16(x, 4), low4)));
    return _mm512_maddubs_epi16(bytes, _mm512_set1_epi8(1));
}

SCI_TF_AVX512BW_TARGET static inline __m512i sci_tf_avx512bw_popcnt_and(__m512i s,
                                                                        uint64_t mask)
{
    __m512i x = _mm512_and_si512(s, _mm512_set1_epi32((int)(uint32_t)mask));
    return _mm512_madd_epi16(sci_tf_avx512bw_popcnt16(x), _mm512_set1_epi16(1));
}

/* With VPOPCNTD (Ice Lake, Zen 4 and later). */
#define SCI_TF_AVX512_TARGET __attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
SCI_TF_AVX512_TARGET static inline __m512i sci_tf_avx512_popcnt_and(__m512i s, uint64_t mask)
{
    return _mm512_popcnt_epi32(_mm512_and_si512(s, _mm512_set1_epi32((int)(uint32_t)mask)));
}

/* Windows of <= 16 frames in 16-bit lanes, 32 pixels a vector; the popcount
 * by nibble counts (AVX-512BW) or VPOPCNTW (BITALG: Ice Lake, Zen 4). */
#define SCI_TF_AVX512W16_TARGET SCI_TF_AVX512BW_TARGET
SCI_TF_AVX512W16_TARGET static inline __m512i sci_tf_avx512w16_load(const uint64_t *w)
{
    __m256i lo = _mm512_cvtepi32_epi16(sci_tf_avx512f_load(w));        /* truncates */
    __m256i hi = _mm512_cvtepi32_epi16(sci_tf_avx512f_load(w + 16));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

SCI_TF_AVX512W16_TARGET static inline __m512i sci_tf_avx512w16_popcnt_and(__m512i s,
                                                                          uint64_t mask)
{
    return sci_tf_avx512bw_popcnt16(
        _mm512_and_si512(s, _mm512_set1_epi16((short)(uint16_t)mask)));
}

#define SCI_TF_BITALG_TARGET __attribute__((target("popcnt,avx512f,avx512bw,avx512bitalg")))
SCI_TF_BITALG_TARGET static inline __m512i sci_tf_bitalg_popcnt_and(__m512i s, uint64_t mask)
{
    return _mm512_popcnt_epi16(_mm512_and_si512(s, _mm512_set1_epi16((short)(uint16_t)mask)));
}

SCI_TF_AVX512W16_TARGET static inline __m512i sci_tf_avx512w16_dot(__m512i cpos, __m512i csup)
{
    return _mm512_sub_epi16(_mm512_add_epi16(cpos, cpos), csup);
}

SCI_TF_AVX512W16_TARGET static inline void sci_tf_avx512w16_store_f32(float *o, __m512i dot,
                                                                     float a, float b)
{
    sci_tf_avx512f_store_f32(o, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(dot)), a, b);
    sci_tf_avx512f_store_f32(o + 16, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(dot, 1)),
                             a, b);
}

SCI_TF_AVX512W16_TARGET static inline void sci_tf_avx512w16_store_i8(int8_t *o, __m512i dot)
{
    _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi16_epi8(dot));
}

#define sci_tf_bitalg_load sci_tf_avx512w16_load
#define sci_tf_bitalg_dot sci_tf_avx512w16_dot
#define sci_tf_bitalg_store_f32 sci_tf_avx512w16_store_f32
#define sci_tf_bitalg_store_i8 sci_tf_avx512w16_store_i8
#define sci_tf_avx512bw_load sci_tf_avx512f_load
#define sci_tf_avx512bw_dot sci_tf_avx512f_dot
#define sci_tf_avx512bw_store_f32 sci_tf_avx512f_store_f32
#define sci_tf_avx512bw_store_i8 sci_tf_avx512f_store_i8
#define sci_tf_avx512_load sci_tf_avx512f_load
#define sci_tf_avx512_dot sci_tf_avx512f_dot
#define sci_tf_avx512_store_f32 sci_tf_avx512f_store_f32
#define sci_tf_avx512_store_i8 sci_tf_avx512f_store_i8

#define SCI_TF_P(name) sci_tf_avx512bw_##name
#define SCI_TF_VEC __m512i
#define SCI_TF_LANES 16
#define SCI_TF_LANE_BITS 32
#define SCI_TF_TARGET SCI_TF_AVX512BW_TARGET
#include "tfilter_simd.h"
#define SCI_TF_P(name) sci_tf_avx512_##name
#define SCI_TF_VEC __m512i
#define SCI_TF_LANES 16
#define SCI_TF_LANE_BITS 32
#define SCI_TF_TARGET SCI_TF_AVX512_TARGET
#include "tfilter_simd.h"
#define SCI_TF_P(name) sci_tf_avx512w16_##name
#define SCI_TF_VEC __m512i
#define SCI_TF_LANES 32
#define SCI_TF_LANE_BITS 16
#define SCI_TF_TARGET SCI_TF_AVX512W16_TARGET
#include "tfilter_simd.h"
#define SCI_TF_P(name) sci_tf_bitalg_##name
#define SCI_TF_VEC __m512i
#define SCI_TF_LANES 32
#define SCI_TF_LANE_BITS 16
#define SCI_TF_TARGET SCI_TF_BITALG_TARGET
#include "tfilter_simd.h"

#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define SCI_TF_ARM 1

static inline uint32x4_t sci_tf_neon_load(const uint64_t *w)
{
    return vcombine_u32(vmovn_u64(vld1q_u64(w)), vmovn_u64(vld1q_u64(w + 2)));
}

static inline uint32x4_t sci_tf_neon_popcnt_and(uint32x4_t s, uint64_t mask)
{
    /* per-byte counts, then pairwise sums up to 32-bit lanes */
    uint8x16_t bytes = vcntq_u8(vreinterpretq_u8_u32(vandq_u32(s, vdupq_n_u32((uint32_t)mask))));
    return vpaddlq_u16(vpaddlq_u8(bytes));
}

static inline uint32x4_t sci_tf_neon_dot(uint32x4_t cpos, uint32x4_t csup)
{
    return vsubq_u32(vshlq_n_u32(cpos, 1), csup);  /* wraps to the right int32 */
}

static inline void sci_tf_neon_store_f32(float *o, uint32x4_t dot, float a, float b)
{
    float32x4_t y = vmulq_f32(vcvtq_f32_s32(vreinterpretq_s32_u32(dot)), vdupq_n_f32(a));
    vst1q_f32(o, vaddq_f32(y, vdupq_n_f32(b)));
}

static inline void sci_tf_neon_store_i8(int8_t *o, uint32x4_t dot)
{
    int16x4_t d16 = vmovn_s32(vreinterpretq_s32_u32(dot));
    int8x8_t d8 = vmovn_s16(vcombine_s16(d16, d16));
    int32_t four = vget_lane_s32(vreinterpret_s32_s8(d8), 0);
    memcpy(o, &four, 4);
}

#define SCI_TF_P(name) sci_tf_neon_##name
#define SCI_TF_VEC uint32x4_t
#define SCI_TF_LANES 4
#define SCI_TF_LANE_BITS 32
#define SCI_TF_TARGET
#include "tfilter_simd.h"

/* Windows of <= 16 frames: 16-bit lanes, 8 pixels a vector, one pairwise add. */
static inline uint16x8_t sci_tf_neon16_load(const uint64_t *w)
{
    return vcombine_u16(vmovn_u32(sci_tf_neon_load(w)), vmovn_u32(sci_tf_neon_load(w + 4)));
}

static inline uint16x8_t sci_tf_neon16_popcnt_and(uint16x8_t s, uint64_t mask)
{
    return vpaddlq_u8(vcntq_u8(vreinterpretq_u8_u16(vandq_u16(s, vdupq_n_u16((uint16_t)mask)))));
}

static inline uint16x8_t sci_tf_neon16_dot(uint16x8_t cpos, uint16x8_t csup)
{
    return vsubq_u16(vshlq_n_u16(cpos, 1), csup);  /* wraps to the right int16 */
}

static inline void sci_tf_neon16_store_f32(float *o, uint16x8_t dot, float a, float b)
{
    int16x8_t d = vreinterpretq_s16_u16(dot);
    sci_tf_neon_store_f32(o, vreinterpretq_u32_s32(vmovl_s16(vget_low_s16(d))), a, b);
    sci_tf_neon_store_f32(o + 4, vreinterpretq_u32_s32(vmovl_s16(vget_high_s16(d))), a, b);
}

static inline void sci_tf_neon16_store_i8(int8_t *o, uint16x8_t dot)
{
    vst1_s8(o, vmovn_s16(vreinterpretq_s16_u16(dot)));
}

#define SCI_TF_P(name) sci_tf_neon16_##name
#define SCI_TF_VEC uint16x8_t
#define SCI_TF_LANES 8
#define SCI_TF_LANE_BITS 16
#define SCI_TF_TARGET
#include "tfilter_simd.h"
#endif

/* Whether this build and this CPU can run a path. */
static inline int sci_tfilter_path_available(int path)
{
    switch (path) {
    case SCI_TF_PORTABLE:
        return 1;
#ifdef SCI_TF_X86
    case SCI_TF_AVX2:
        return __builtin_cpu_supports("avx2");
    case SCI_TF_AVX512BW:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    case SCI_TF_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vpopcntdq");
#endif
#ifdef SCI_TF_ARM
    case SCI_TF_NEON:
        return 1;  /* baseline on aarch64 */
#endif
    default:
        return 0;
    }
}

static inline int sci_tfilter_best_path(void)
{
    const int order[] = {SCI_TF_AVX512, SCI_TF_AVX512BW, SCI_TF_NEON, SCI_TF_AVX2};
    for (int k = 0; k < 4; ++k)
        if (sci_tfilter_path_available(order[k]))
            return order[k];
    return SCI_TF_PORTABLE;
}

static inline const char *sci_tfilter_path_name(int path)
{
    static const char *const names[] = {"portable", "avx2", "avx512bw", "avx512-vpopcntdq",
                                        "neon"};
    return path >= 0 && path <= SCI_TF_NEON ? names[path] : "unknown";
}

/* Whole vectors on the chosen path (the caller checked it is available), the
 * rest of the row on the portable loop. out_f (float) or out_i (int8). */
static void sci_tfilter_row_on(int path, int64_t n, const uint64_t *words, int C,
                               const uint64_t *pos, const uint64_t *sup, const float *alpha,
                               const float *bias, float *out_f, int8_t *out_i, int64_t plane)
{
    int64_t done = 0;
#ifdef SCI_TF_X86
    /* windows of <= 16 frames take the 16-bit-lane loops first; a support beyond
     * 16 frames (or a row under one vector) makes them return 0 */
    if (path == SCI_TF_AVX512) {
        if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bitalg"))
            done = sci_tf_bitalg_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
        if (done == 0)
            done = sci_tf_avx512_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
    } else if (path == SCI_TF_AVX512BW) {
        done = sci_tf_avx512w16_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
        if (done == 0)
            done = sci_tf_avx512bw_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
    }
    else if (path == SCI_TF_AVX2) {
        done = sci_tf_avx2w16_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
        if (done == 0)
            done = sci_tf_avx2_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
    }
#endif
#ifdef SCI_TF_ARM
    if (path == SCI_TF_NEON) {
        done = sci_tf_neon16_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
        if (done == 0)
            done = sci_tf_neon_row(n, words, C, pos, sup, alpha, bias, out_f, out_i, plane);
    }
#endif
    if (done == n)
        return;
    if (out_f)
        sci_tfilter_row(n - done, words + done, C, pos, sup, alpha, bias, out_f + done, plane);
    else
        sci_tfilter_row_int8(n - done, words + done, C, pos, sup, out_i + done, plane);
}

#endif

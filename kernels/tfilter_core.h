/* Binarized temporal filters over bit-packed time (the end side's first layer).
 *
 * A pixel's spikes in a window of up to 64 frames are one word, bit j = frame j.
 * A filter c has weights +1 on the bits of pos[c] and -1 on the rest of its
 * support sup[c], so its integer response is
 *     dot = popcount(s & pos) - popcount(s & sup & ~pos) = 2*popcount(s & pos) - popcount(s & sup)
 * and the float output is (float)dot * alpha[c] + bias[c] (float32, multiply
 * then add, as the torch layer sci_edge.models.binary.BinaryTemporalBank does).
 */
#ifndef SCI_TFILTER_CORE_H
#define SCI_TFILTER_CORE_H
#include <stdint.h>

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

/* AVX-512 with VPOPCNTQ (Ice Lake, Zen 4 and later): eight pixels per step.
 * Chosen at run time, so one build still runs on any x86-64. The float path
 * stays multiply-then-add (no FMA), like the scalar one. */
#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 8)
#define SCI_TF_HAVE_AVX512 1
#include <immintrin.h>

static inline int sci_tfilter_use_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vpopcntdq");
}

__attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
static inline __m512i sci_tf_dot8(const uint64_t *w, __m512i p, __m512i m)
{
    __m512i s = _mm512_loadu_si512((const void *)w);
    __m512i cp = _mm512_popcnt_epi64(_mm512_and_si512(s, p));
    __m512i cm = _mm512_popcnt_epi64(_mm512_and_si512(s, m));
    return _mm512_sub_epi64(_mm512_add_epi64(cp, cp), cm);
}

/* Windows of <= 32 frames (the FEM's is 13) fit 32-bit lanes: 16 pixels a
 * step, and filters sharing a support (consecutive in the bank) share its
 * popcount. Wider windows take 8 pixels a step in 64-bit lanes. */
static inline int sci_tf_fits32(int C, const uint64_t *sup)
{
    for (int c = 0; c < C; ++c)
        if (sup[c] >> 32)
            return 0;
    return 1;
}

__attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
static inline __m512i sci_tf_load16(const uint64_t *w)
{
    __m256i lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)w));
    __m256i hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *)(w + 8)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Dots of a tile of T x 16 pixels for every filter in turn; EMIT(c, v, dot)
 * stores vector v. Channel-major within the tile keeps the stores to a few
 * contiguous lines (channel planes are 4 KiB-aliased, so pixel-major stores
 * across 64 planes would thrash L1 sets). */
#define SCI_TF_TILE 8
#define SCI_TF_DOTS_TILE(T, words, C, pos, sup, EMIT)                                   \
    do {                                                                             \
        __m512i s_[T], csup_[T];                                 \
        for (int v = 0; v < (T); ++v)                                        \
            s_[v] = sci_tf_load16((words) + 16 * v);                                 \
        for (int c = 0; c < (C); ++c) {                                              \
            if (c == 0 || (sup)[c] != (sup)[c - 1]) {                                \
                const __m512i m_ = _mm512_set1_epi32((int)(uint32_t)(sup)[c]);       \
                for (int v = 0; v < (T); ++v)                                \
                    csup_[v] = _mm512_popcnt_epi32(_mm512_and_si512(s_[v], m_));      \
            }                                                                        \
            const __m512i p_ = _mm512_set1_epi32((int)(uint32_t)(pos)[c]);           \
            for (int v = 0; v < (T); ++v) {                                  \
                __m512i cp_ = _mm512_popcnt_epi32(_mm512_and_si512(s_[v], p_));       \
                __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(cp_, cp_), csup_[v]); \
                EMIT;                                                                \
            }                                                                        \
        }                                                                            \
    } while (0)

__attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
static void sci_tfilter_row_avx512(int64_t n, const uint64_t *words, int C,
                                   const uint64_t *pos, const uint64_t *sup,
                                   const float *alpha, const float *bias,
                                   float *out, int64_t plane)
{
    int64_t done = 0;
    if (sci_tf_fits32(C, sup)) {
#define SCI_TF_EMIT_F32                                                              \
    {                                                                                \
        __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(alpha[c]));  \
        _mm512_storeu_ps(out + (int64_t)c * plane + i + 16 * v,                      \
                         _mm512_add_ps(y, _mm512_set1_ps(bias[c])));                 \
    }
        int64_t i = 0;
        for (; i + 16 * SCI_TF_TILE <= n; i += 16 * SCI_TF_TILE)
            SCI_TF_DOTS_TILE(SCI_TF_TILE, words + i, C, pos, sup, SCI_TF_EMIT_F32);
        if (i + 64 <= n) {
            SCI_TF_DOTS_TILE(4, words + i, C, pos, sup, SCI_TF_EMIT_F32);
            i += 64;
        }
        if (i + 32 <= n) {
            SCI_TF_DOTS_TILE(2, words + i, C, pos, sup, SCI_TF_EMIT_F32);
            i += 32;
        }
        if (i + 16 <= n) {
            SCI_TF_DOTS_TILE(1, words + i, C, pos, sup, SCI_TF_EMIT_F32);
            i += 16;
        }
#undef SCI_TF_EMIT_F32
        done = i;
    } else {
        done = n & ~(int64_t)7;
        for (int c = 0; c < C; ++c) {
            const __m512i p = _mm512_set1_epi64((long long)pos[c]);
            const __m512i m = _mm512_set1_epi64((long long)sup[c]);
            const __m256 a = _mm256_set1_ps(alpha[c]), b = _mm256_set1_ps(bias[c]);
            float *o = out + (int64_t)c * plane;
            for (int64_t i = 0; i < done; i += 8) {
                __m256 y = _mm256_mul_ps(_mm512_cvtepi64_ps(sci_tf_dot8(words + i, p, m)), a);
                _mm256_storeu_ps(o + i, _mm256_add_ps(y, b));
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        float *o = out + (int64_t)c * plane;
        for (int64_t i = done; i < n; ++i) {
            uint64_t s = words[i];
            int dot = 2 * (int)_mm_popcnt_u64(s & pos[c]) - (int)_mm_popcnt_u64(s & sup[c]);
            float y = (float)dot * alpha[c];
            o[i] = y + bias[c];
        }
    }
}

__attribute__((target("popcnt,avx512f,avx512dq,avx512vpopcntdq")))
static void sci_tfilter_row_int8_avx512(int64_t n, const uint64_t *words, int C,
                                        const uint64_t *pos, const uint64_t *sup,
                                        int8_t *out, int64_t plane)
{
    /* |dot| <= 64, so narrowing to 8 bits is exact */
    int64_t done = 0;
    if (sci_tf_fits32(C, sup)) {
#define SCI_TF_EMIT_I8                                                               \
    _mm_storeu_si128((__m128i *)(out + (int64_t)c * plane + i + 16 * v),             \
                     _mm512_cvtepi32_epi8(dot))
        int64_t i = 0;
        for (; i + 16 * SCI_TF_TILE <= n; i += 16 * SCI_TF_TILE)
            SCI_TF_DOTS_TILE(SCI_TF_TILE, words + i, C, pos, sup, SCI_TF_EMIT_I8);
        if (i + 64 <= n) {
            SCI_TF_DOTS_TILE(4, words + i, C, pos, sup, SCI_TF_EMIT_I8);
            i += 64;
        }
        if (i + 32 <= n) {
            SCI_TF_DOTS_TILE(2, words + i, C, pos, sup, SCI_TF_EMIT_I8);
            i += 32;
        }
        if (i + 16 <= n) {
            SCI_TF_DOTS_TILE(1, words + i, C, pos, sup, SCI_TF_EMIT_I8);
            i += 16;
        }
#undef SCI_TF_EMIT_I8
        done = i;
    } else {
        done = n & ~(int64_t)7;
        for (int c = 0; c < C; ++c) {
            const __m512i p = _mm512_set1_epi64((long long)pos[c]);
            const __m512i m = _mm512_set1_epi64((long long)sup[c]);
            int8_t *o = out + (int64_t)c * plane;
            for (int64_t i = 0; i < done; i += 8)
                _mm_storel_epi64((__m128i *)(o + i),
                                 _mm512_cvtepi64_epi8(sci_tf_dot8(words + i, p, m)));
        }
    }
    for (int c = 0; c < C; ++c) {
        int8_t *o = out + (int64_t)c * plane;
        for (int64_t i = done; i < n; ++i) {
            uint64_t s = words[i];
            o[i] = (int8_t)(2 * (int)_mm_popcnt_u64(s & pos[c]) - (int)_mm_popcnt_u64(s & sup[c]));
        }
    }
}
#else
#define SCI_TF_HAVE_AVX512 0
static inline int sci_tfilter_use_avx512(void) { return 0; }
#endif

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

/* The portable loops: tiles of 64 pixels, channel-major within a tile (channel
 * planes are 4 KiB-aliased), and filters that share a support (consecutive
 * in the bank) share its popcount. */
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

#endif

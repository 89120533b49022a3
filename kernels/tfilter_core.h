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
#define SCI_TF_MULTIVERSION __attribute__((target_clones("avx2", "popcnt", "default")))
#else
#define SCI_TF_MULTIVERSION
#endif

/* Filter one row of n pixel words with C filters; out is (C, plane) floats. */
SCI_TF_MULTIVERSION static void sci_tfilter_row(int64_t n, const uint64_t *words, int C,
                                                const uint64_t *pos, const uint64_t *sup,
                                                const float *alpha, const float *bias,
                                                float *out, int64_t plane)
{
    for (int c = 0; c < C; ++c) {
        const uint64_t p = pos[c], m = sup[c];
        const float a = alpha[c], b = bias[c];
        float *o = out + (int64_t)c * plane;
        for (int64_t i = 0; i < n; ++i) {
            uint64_t s = words[i];
            int dot = 2 * SCI_POPCOUNT64(s & p) - SCI_POPCOUNT64(s & m);
            float y = (float)dot * a;
            o[i] = y + b;
        }
    }
}

/* Integer responses only, as int8 (|dot| <= 64 fits): the edge's quantized
 * next layer takes them directly, with alpha and bias folded into its scale. */
SCI_TF_MULTIVERSION static void sci_tfilter_row_int8(int64_t n, const uint64_t *words, int C,
                                                     const uint64_t *pos, const uint64_t *sup,
                                                     int8_t *out, int64_t plane)
{
    for (int c = 0; c < C; ++c) {
        const uint64_t p = pos[c], m = sup[c];
        int8_t *o = out + (int64_t)c * plane;
        for (int64_t i = 0; i < n; ++i) {
            uint64_t s = words[i];
            o[i] = (int8_t)(2 * SCI_POPCOUNT64(s & p) - SCI_POPCOUNT64(s & m));
        }
    }
}

#endif

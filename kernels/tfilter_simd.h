/* The SIMD tile loop of tfilter_core.h, written once and included once per
 * instruction set. Before including, define:
 *   SCI_TF_P(name)  the prefix of this set's functions, e.g. sci_tf_avx2_##name
 *   SCI_TF_VEC      a vector of SCI_TF_LANES pixels
 *   SCI_TF_LANES    pixels per vector
 *   SCI_TF_LANE_BITS  bits per lane (32, or 16 where windows fit 16 frames)
 *   SCI_TF_TARGET   the function attribute enabling the set (may be empty)
 * and the set's SCI_TF_P(load), SCI_TF_P(popcnt_and), SCI_TF_P(dot),
 * SCI_TF_P(store_f32), SCI_TF_P(store_i8). This file defines SCI_TF_P(row):
 * the whole vectors of a row, returning how many pixels it did (0 when a support
 * reaches beyond SCI_TF_LANE_BITS frames, leaving the row to another loop); at
 * its end it undefines the five parameters, so each inclusion defines them afresh.
 */
#define SCI_TF_MAX_TILE 8

/* One tile of T vectors, all filters; float output when out_f is given, else
 * int8 into out_i. Inlined with a constant T, the arrays live in registers. */
SCI_TF_TARGET static inline __attribute__((always_inline)) void SCI_TF_P(tile)(
    int T, const uint64_t *words, int C, const uint64_t *pos, const uint64_t *sup,
    const float *alpha, const float *bias, float *out_f, int8_t *out_i, int64_t plane)
{
    SCI_TF_VEC s[SCI_TF_MAX_TILE], csup[SCI_TF_MAX_TILE];
    for (int v = 0; v < T; ++v)
        s[v] = SCI_TF_P(load)(words + SCI_TF_LANES * v);
    for (int c = 0; c < C; ++c) {
        if (c == 0 || sup[c] != sup[c - 1])
            for (int v = 0; v < T; ++v)
                csup[v] = SCI_TF_P(popcnt_and)(s[v], sup[c]);
        for (int v = 0; v < T; ++v) {
            SCI_TF_VEC dot = SCI_TF_P(dot)(SCI_TF_P(popcnt_and)(s[v], pos[c]), csup[v]);
            int64_t at = (int64_t)c * plane + SCI_TF_LANES * v;
            if (out_f)
                SCI_TF_P(store_f32)(out_f + at, dot, alpha[c], bias[c]);
            else
                SCI_TF_P(store_i8)(out_i + at, dot);
        }
    }
}

SCI_TF_TARGET static int64_t SCI_TF_P(row)(int64_t n, const uint64_t *words, int C,
                                           const uint64_t *pos, const uint64_t *sup,
                                           const float *alpha, const float *bias,
                                           float *out_f, int8_t *out_i, int64_t plane)
{
    for (int c = 0; c < C; ++c)
        if (sup[c] >> SCI_TF_LANE_BITS)
            return 0;
    int64_t i = 0;
#define SCI_TF_TILE_AT(T)                                                            \
    SCI_TF_P(tile)(T, words + i, C, pos, sup, alpha, bias, out_f ? out_f + i : 0,    \
                   out_i ? out_i + i : 0, plane)
    for (; i + SCI_TF_LANES * SCI_TF_MAX_TILE <= n; i += SCI_TF_LANES * SCI_TF_MAX_TILE)
        SCI_TF_TILE_AT(SCI_TF_MAX_TILE);
    if (i + SCI_TF_LANES * 4 <= n) { SCI_TF_TILE_AT(4); i += SCI_TF_LANES * 4; }
    if (i + SCI_TF_LANES * 2 <= n) { SCI_TF_TILE_AT(2); i += SCI_TF_LANES * 2; }
    if (i + SCI_TF_LANES <= n) { SCI_TF_TILE_AT(1); i += SCI_TF_LANES; }
#undef SCI_TF_TILE_AT
    return i;
}

#undef SCI_TF_MAX_TILE
#undef SCI_TF_P
#undef SCI_TF_VEC
#undef SCI_TF_LANES
#undef SCI_TF_LANE_BITS
#undef SCI_TF_TARGET

/* Counter-based random numbers for the spike kernels.
 *
 * A draw depends only on (seed, step, pixel), never on how the work is split
 * into chunks or threads, so streaming equals one call and the numpy reference
 * (sci_edge.sim.reference) reproduces every draw bit for bit.
 */
#ifndef SCI_RNG_H
#define SCI_RNG_H
#include <stdint.h>

/* splitmix64 finaliser: a bijective 64-bit mix. */
static inline uint64_t sci_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}

/* Hash of (seed, step, pixel). */
static inline uint64_t sci_hash3(uint64_t seed, uint64_t step, uint64_t pixel) {
    uint64_t h = sci_mix64(seed + 0x9E3779B97F4A7C15ULL);
    h = sci_mix64(h ^ (step * 0xD1B54A32D192ED03ULL));
    h = sci_mix64(h ^ (pixel * 0x8CB92BA72F3D8DD7ULL));
    return h;
}

/* Approximately standard normal: Irwin-Hall sum of four 16-bit uniforms.
 * Integer sum, one exact int->float conversion and one float multiply, so the
 * value is identical on every IEEE-754 machine. Range is about +-3.46. */
static inline float sci_normal(uint64_t h) {
    int32_t s = (int32_t)(h & 0xFFFF) + (int32_t)((h >> 16) & 0xFFFF)
              + (int32_t)((h >> 32) & 0xFFFF) + (int32_t)((h >> 48) & 0xFFFF);
    /* sqrt(3) / 65536 rounded to float32 */
    const float scale = 2.6428997e-05f;
    return (float)(s - 131070) * scale;
}

#endif

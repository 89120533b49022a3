/* rANS entropy coder over indexed CDF tables (private: use sci_edge.codec.rans).
 *
 * Two interleaved 32-bit states in [2^16, 2^32) (symbol k on state k & 1),
 * 16-bit renormalisation words shared by both, 16-bit CDF precision. The
 * encoder walks the symbols backwards and appends words; the stream is the two
 * final states followed by those words reversed (the order the decoder reads
 * them), all little-endian. Out-of-range symbols take the table's escape slot,
 * then a bypass value in 4-bit chunks coded with a uniform distribution
 * through the same state. Plain C99, no intrinsics. */
#ifndef SCI_RANS_CORE_H
#define SCI_RANS_CORE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCI_RANS_PREC 16
#define SCI_RANS_LOW ((uint32_t)1 << 16) /* state lower bound; also the initial/final state */
#define SCI_RANS_MAX_NIBBLES 9           /* escape values are < 2^33 */
#define SCI_RANS_BUCKET_EXTRA 2           /* decode lookup: ~4 buckets per slot, */
#define SCI_RANS_BUCKET_MIN 8             /* 2^8 .. 2^12 buckets per table */
#define SCI_RANS_BUCKET_MAX 12
#define SCI_RANS_WORDS_PER_SYMBOL 11      /* slot + count + 9 nibbles, at most one word each */

enum {
    SCI_RANS_OK = 0,
    SCI_RANS_ENOMEM,
    SCI_RANS_EINDEX,    /* table index out of range */
    SCI_RANS_ESHORT,    /* fewer than 8 bytes, or an odd length */
    SCI_RANS_EINIT,     /* initial state below the lower bound */
    SCI_RANS_ETRUNC,    /* ran out of words */
    SCI_RANS_ECOUNT,    /* escape with more than 9 nibbles */
    SCI_RANS_ERANGE,    /* decoded value outside int32 */
    SCI_RANS_ETRAIL,    /* words left over after the last symbol */
    SCI_RANS_ESTATE     /* a final state is not the initial one */
};

/* Encoder data per slot. q = floor(x / freq) exactly for every 32-bit x as
 * (x + ((x * rcp) >> 32)) >> shift, with rcp = ceil(2^(32+shift) / freq) - 2^32
 * and shift = ceil(log2 freq): one multiply instead of a divide. */
typedef struct {
    uint32_t rcp;
    uint32_t xmax;  /* freq << 16: renormalise while x >= xmax */
    uint32_t start;
    uint16_t cmpl;  /* 2^16 - freq */
    uint16_t shift;
} sci_rans_enc_slot;

static inline void sci_rans_enc_slot_init(sci_rans_enc_slot *e, uint32_t start, uint32_t freq)
{
    uint32_t shift = 0;
    while (((uint32_t)1 << shift) < freq)
        shift++;
    uint64_t m = ((((uint64_t)1 << (32 + shift)) + freq - 1) / freq) - ((uint64_t)1 << 32);
    e->rcp = (uint32_t)m;
    e->xmax = freq << 16;
    e->start = start;
    e->cmpl = (uint16_t)(65536 - freq);
    e->shift = (uint16_t)shift;
}

/* One table: its slots (escape last), cdf row, and decode buckets. */
typedef struct {
    const sci_rans_enc_slot *enc;   /* nsym + 1 slots */
    const int32_t *cdf;             /* nsym + 2 entries, validated */
    const uint16_t *bucket;         /* the slot holding each bucket's start */
    int32_t offset;
    int32_t nsym;                   /* ordinary symbols: length - 2 */
    uint32_t bucket_shift;          /* bucket of y: y >> bucket_shift */
} sci_rans_table;

/* log2 of a table's bucket count: enough that few buckets hold a slot boundary,
 * no more (small tables stay small in cache). */
static inline int sci_rans_bucket_bits(int64_t length)
{
    int bits = SCI_RANS_BUCKET_EXTRA;
    while (((int64_t)1 << (bits - SCI_RANS_BUCKET_EXTRA)) < length - 1)
        bits++;
    return bits < SCI_RANS_BUCKET_MIN ? SCI_RANS_BUCKET_MIN
         : bits > SCI_RANS_BUCKET_MAX ? SCI_RANS_BUCKET_MAX : bits;
}

/* Bucket entries sci_rans_build needs for tables of these lengths. */
static inline int64_t sci_rans_bucket_entries(int64_t n_tables, const int32_t *length)
{
    int64_t total = 0;
    for (int64_t t = 0; t < n_tables; t++)
        total += (int64_t)1 << sci_rans_bucket_bits(length[t]);
    return total;
}

typedef struct {
    int64_t n_tables;
    const sci_rans_table *tab;
} sci_rans_tables;

/* Table problems, in the order they are looked for in each table. */
enum {
    SCI_RANS_TABLE_OK = 0,
    SCI_RANS_TABLE_LENGTH,      /* length outside 3..stride */
    SCI_RANS_TABLE_START,       /* cdf[0] != 0 */
    SCI_RANS_TABLE_END,         /* cdf[len-1] != 2^16 */
    SCI_RANS_TABLE_DECREASING,  /* cdf[slot+1] < cdf[slot] */
    SCI_RANS_TABLE_ZERO         /* cdf[slot+1] == cdf[slot] */
};

/* The first bad table: returns its problem and sets *table (and *slot for
 * the last two), or SCI_RANS_TABLE_OK. */
static inline int sci_rans_check(int64_t n_tables, int64_t stride, const int32_t *cdf,
                                 const int32_t *length, int64_t *table, int64_t *slot)
{
    for (int64_t t = 0; t < n_tables; t++) {
        const int32_t *c = cdf + t * stride;
        int64_t len = length[t];
        *table = t;
        if (len < 3 || len > stride)
            return SCI_RANS_TABLE_LENGTH;
        if (c[0] != 0)
            return SCI_RANS_TABLE_START;
        if (c[len - 1] != (int32_t)1 << SCI_RANS_PREC)
            return SCI_RANS_TABLE_END;
        for (int64_t j = 0; j + 1 < len; j++) {
            if (c[j + 1] <= c[j]) {
                *slot = j;
                return c[j + 1] < c[j] ? SCI_RANS_TABLE_DECREASING : SCI_RANS_TABLE_ZERO;
            }
        }
    }
    return SCI_RANS_TABLE_OK;
}

/* Fills tab from tables that passed sci_rans_check, copying each row into
 * rows (sum of length[t] entries) so that nothing the caller changes later can
 * move a row's 2^16 end, which bounds the decoder's slot search; enc gets sum
 * of length[t] - 1 slots, bucket sci_rans_bucket_entries() entries. */
static inline void sci_rans_build(int64_t n_tables, int64_t stride, const int32_t *cdf,
                                  const int32_t *length, const int32_t *offset,
                                  sci_rans_table *tab, int32_t *rows, sci_rans_enc_slot *enc,
                                  uint16_t *bucket)
{
    for (int64_t t = 0; t < n_tables; t++) {
        int32_t len = length[t], slots = len - 1;
        memcpy(rows, cdf + t * stride, (size_t)len * sizeof(int32_t));
        const int32_t *c = rows;
        for (int32_t j = 0; j < slots; j++)
            sci_rans_enc_slot_init(enc + j, (uint32_t)c[j], (uint32_t)(c[j + 1] - c[j]));
        int bits = sci_rans_bucket_bits(len);
        int32_t j = 0;
        for (int32_t k = 0; k < (1 << bits); k++) {
            int32_t y = k << (SCI_RANS_PREC - bits);
            while (c[j + 1] <= y)
                j++;
            bucket[k] = (uint16_t)j;
        }
        tab[t].enc = enc;
        tab[t].cdf = c;
        tab[t].bucket = bucket;
        tab[t].offset = offset[t];
        tab[t].nsym = len - 2;
        tab[t].bucket_shift = (uint32_t)(SCI_RANS_PREC - bits);
        enc += slots;
        rows += len;
        bucket += (int64_t)1 << bits;
    }
}

/* branchless (a compile-time constant where it is inlined) stores the word
 * unconditionally and keeps it only when flushing: slower when flushes are
 * rare and predictable, much faster when they are frequent and random. */
static inline uint32_t sci_rans_put_as(uint32_t x, const sci_rans_enc_slot *e, uint16_t **out,
                                       int branchless)
{
    if (branchless) {
        uint32_t flush = x >= e->xmax;
        **out = (uint16_t)x;
        *out += flush;
        x >>= flush << 4;
    } else if (x >= e->xmax) {
        *(*out)++ = (uint16_t)x;
        x >>= 16;
    }
    uint32_t q = (uint32_t)(((uint64_t)x + (((uint64_t)x * e->rcp) >> 32)) >> e->shift);
    /* x' = (q << 16) + (x - q * freq) + start */
    return x + e->start + q * e->cmpl;
}

static inline uint32_t sci_rans_put(uint32_t x, const sci_rans_enc_slot *e, uint16_t **out)
{
    return sci_rans_put_as(x, e, out, 0);
}

static inline uint32_t sci_rans_put_nibble(uint32_t x, uint32_t nib, uint16_t **out)
{
    if (x >= ((uint32_t)1 << 28)) {
        *(*out)++ = (uint16_t)x;
        x >>= 16;
    }
    return ((x >> 12) << 16) | (nib << 12) | (x & 0xfffu);
}

#if defined(__GNUC__) || defined(__clang__)
#define SCI_RANS_COLD __attribute__((noinline, cold))
#elif defined(_MSC_VER)
#define SCI_RANS_COLD __declspec(noinline)
#else
#define SCI_RANS_COLD
#endif

typedef struct {
    uint32_t x;
    uint16_t *out;
} sci_rans_enc_state;

/* Escape slot, then raw's 4-bit chunk count and its chunks, pushed in the
 * reverse of the order the decoder reads them. By value, so that the hot
 * loop keeps x and out in registers. */
static SCI_RANS_COLD sci_rans_enc_state sci_rans_put_escape(uint32_t x, uint16_t *out, int64_t v,
                                                            int64_t ns,
                                                            const sci_rans_enc_slot *esc)
{
    uint64_t raw = v < 0 ? (uint64_t)(-2 * v - 1) : (uint64_t)(2 * (v - ns));
    uint32_t c = 0;
    while (c < 16 && (raw >> (4 * c)) != 0)
        c++;
    for (uint32_t i = c; i-- > 0;)
        x = sci_rans_put_nibble(x, (uint32_t)(raw >> (4 * i)) & 0xfu, &out);
    x = sci_rans_put_nibble(x, c % 15, &out);
    for (uint32_t i = 0; i < c / 15; i++)
        x = sci_rans_put_nibble(x, 15, &out);
    sci_rans_enc_state r;
    r.x = sci_rans_put(x, esc, &out);
    r.out = out;
    return r;
}

/* Codes symbol s with table t onto *x; 0, or SCI_RANS_EINDEX for a bad t. */
static inline int sci_rans_enc_one(const sci_rans_table *tab, int64_t n_tables, uint32_t *x,
                                   int32_t s, int32_t t, uint16_t **out, int branchless)
{
    if ((uint64_t)(int64_t)t >= (uint64_t)n_tables)
        return SCI_RANS_EINDEX;
    const sci_rans_table *tb = tab + t;
    int64_t v = (int64_t)s - tb->offset;
    int64_t ns = tb->nsym;
    if ((uint64_t)v < (uint64_t)ns) {
        *x = sci_rans_put_as(*x, tb->enc + v, out, branchless);
    } else {
        sci_rans_enc_state r = sci_rans_put_escape(*x, *out, v, ns, tb->enc + ns);
        *x = r.x;
        *out = r.out;
    }
    return 0;
}

#define SCI_RANS_BLOCK 1024 /* symbols between choices of the renormalisation code */

/* Two interleaved states (symbol k on state k & 1) so that two independent
 * dependency chains overlap; both share one word stream. Words are appended
 * in encoding order into a growing buffer and written out reversed by the
 * caller. Each block of symbols uses the branchless renormalisation when the
 * block before emitted more than 0.15 words per symbol (the output is the
 * same either way). On success *words (free() it) holds *n_words words. */
static inline int sci_rans_encode(const sci_rans_tables *T, int64_t n, const int32_t *sym,
                                  const int32_t *idx, uint16_t **words, int64_t *n_words,
                                  uint32_t state[2], int64_t *bad)
{
    int64_t cap = n / 2 + SCI_RANS_WORDS_PER_SYMBOL;
    uint16_t *buf = (uint16_t *)malloc((size_t)cap * sizeof(uint16_t));
    if (!buf)
        return SCI_RANS_ENOMEM;
    uint16_t *out = buf;
    uint32_t x0 = SCI_RANS_LOW, x1 = SCI_RANS_LOW;
    const sci_rans_table *tab = T->tab; /* locals: the word stores cannot alias them */
    const int64_t nt = T->n_tables;
    int branchless = 0;
    int64_t k = n - 1;
    if (n & 1) {
        if (sci_rans_enc_one(tab, nt, &x0, sym[k], idx[k], &out, 0))
            goto bad_index;
        k--;
    }
    while (k > 0) {   /* k odd: symbol k on x1, k - 1 on x0 */
        int64_t todo = k + 1 < SCI_RANS_BLOCK ? k + 1 : SCI_RANS_BLOCK, stop = k - todo;
        int64_t used = out - buf, need = used + todo * SCI_RANS_WORDS_PER_SYMBOL;
        if (need > cap) {
            int64_t ncap = need > 2 * cap ? need : 2 * cap;
            uint16_t *nb = (uint16_t *)realloc(buf, (size_t)ncap * sizeof(uint16_t));
            if (!nb) {
                free(buf);
                return SCI_RANS_ENOMEM;
            }
            buf = nb;
            cap = ncap;
            out = buf + used;
        }
#define SCI_RANS_PAIRS(bl)                                                              \
        for (; k > stop; k -= 2) {                                                      \
            if (sci_rans_enc_one(tab, nt, &x1, sym[k], idx[k], &out, bl))               \
                goto bad_index;                                                         \
            if (sci_rans_enc_one(tab, nt, &x0, sym[k - 1], idx[k - 1], &out, bl)) {     \
                k--;                                                                    \
                goto bad_index;                                                         \
            }                                                                           \
        }
        if (branchless)
            SCI_RANS_PAIRS(1)
        else
            SCI_RANS_PAIRS(0)
#undef SCI_RANS_PAIRS
        branchless = 20 * (out - buf - used) > 3 * todo;
    }
    *words = buf;
    *n_words = out - buf;
    state[0] = x0;
    state[1] = x1;
    return SCI_RANS_OK;
bad_index:
    free(buf);
    *bad = k;
    return SCI_RANS_EINDEX;
}

/* The stream: both states, then the words in reverse order of emission,
 * little-endian whatever the host; dst holds 8 + 2 * n_words bytes. */
static inline void sci_rans_write_stream(uint8_t *dst, const uint32_t state[2],
                                         const uint16_t *words, int64_t n_words)
{
    for (int i = 0; i < 8; i++)
        dst[i] = (uint8_t)(state[i >> 2] >> (8 * (i & 3)));
    dst += 8;
    const uint16_t probe = 1;
    uint8_t little;
    memcpy(&little, &probe, 1);
    if (little) {   /* one reversed 16-bit copy, which compilers vectorise */
        for (int64_t i = 0; i < n_words; i++) {
            uint16_t w = words[n_words - 1 - i];
            memcpy(dst + 2 * i, &w, 2);
        }
        return;
    }
    for (int64_t i = 0; i < n_words; i++) {
        uint16_t w = words[n_words - 1 - i];
        dst[2 * i] = (uint8_t)w;
        dst[2 * i + 1] = (uint8_t)(w >> 8);
    }
}

/* Reads the little-endian word at p[0..1]. */
static inline uint32_t sci_rans_rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

typedef struct {
    const uint8_t *p, *end;
} sci_rans_reader;

/* Renormalises x; SCI_RANS_ETRUNC when a word is needed and none is left. */
#define SCI_RANS_RENORM(x, r)                           \
    do {                                                \
        if ((x) < SCI_RANS_LOW) {                       \
            if ((r)->p == (r)->end)                     \
                return SCI_RANS_ETRUNC;                 \
            (x) = ((x) << 16) | sci_rans_rd16((r)->p);  \
            (r)->p += 2;                                \
        }                                               \
    } while (0)

typedef struct {
    uint32_t x;
    int32_t rc;
    const uint8_t *p;
    int64_t v;
} sci_rans_dec_escape;

/* The bypass value after an escape slot -> v (slot units, may be negative).
 * By value, so that the hot loop keeps its state and read pointer in registers. */
static SCI_RANS_COLD sci_rans_dec_escape sci_rans_get_escape(uint32_t x, const uint8_t *p,
                                                             const uint8_t *end, int64_t ns)
{
    sci_rans_dec_escape e = {0, SCI_RANS_OK, NULL, 0};
    uint32_t cnt = 0, chunk, i;
    uint64_t raw = 0;
#define SCI_RANS_NIBBLE(nib)                        \
    do {                                            \
        (nib) = (x >> 12) & 0xfu;                   \
        x = ((x >> 16) << 12) | (x & 0xfffu);       \
        if (x < SCI_RANS_LOW) {                     \
            if (p == end) {                         \
                e.rc = SCI_RANS_ETRUNC;             \
                return e;                           \
            }                                       \
            x = (x << 16) | sci_rans_rd16(p);       \
            p += 2;                                 \
        }                                           \
    } while (0)
    do {   /* the count, in chunks of 15 while more follow */
        SCI_RANS_NIBBLE(chunk);
        cnt += chunk;
        if (cnt > SCI_RANS_MAX_NIBBLES) {
            e.rc = SCI_RANS_ECOUNT;
            return e;
        }
    } while (chunk == 15);
    for (i = 0; i < cnt; i++) {
        SCI_RANS_NIBBLE(chunk);
        raw |= (uint64_t)chunk << (4 * i);
    }
#undef SCI_RANS_NIBBLE
    e.x = x;
    e.p = p;
    e.v = (raw & 1) ? -(int64_t)((raw + 1) >> 1) : (int64_t)(raw >> 1) + ns;
    return e;
}

/* Decodes one symbol with table t from *px into *res; 0 or an error code. */
static inline int sci_rans_dec_one(const sci_rans_table *tab, int64_t n_tables, uint32_t *px,
                                   int32_t t, sci_rans_reader *r, int32_t *res)
{
    if ((uint64_t)(int64_t)t >= (uint64_t)n_tables)
        return SCI_RANS_EINDEX;
    uint32_t x = *px;
    const sci_rans_table *tb = tab + t;
    const int32_t *c = tb->cdf;
    uint32_t y = x & 0xffffu;
    int32_t j = tb->bucket[y >> tb->bucket_shift];
    while ((uint32_t)c[j + 1] <= y) /* c[len-1] = 2^16 > y stops it inside the row */
        j++;
    uint32_t start = (uint32_t)c[j];
    x = ((uint32_t)c[j + 1] - start) * (x >> 16) + y - start;
    SCI_RANS_RENORM(x, r);
    int64_t ns = tb->nsym, v = j;
    if (j == ns) {
        sci_rans_dec_escape e = sci_rans_get_escape(x, r->p, r->end, ns);
        if (e.rc)
            return e.rc;
        x = e.x;
        r->p = e.p;
        v = e.v;
    }
    *px = x;
    int64_t s = v + tb->offset;
    if (s < INT32_MIN || s > INT32_MAX)
        return SCI_RANS_ERANGE;
    *res = (int32_t)s;
    return 0;
}

/* Never reads outside data[0..len) or the tables, whatever the bytes; every
 * loop is bounded by n, a table row or SCI_RANS_MAX_NIBBLES. */
static inline int sci_rans_decode(const sci_rans_tables *T, const uint8_t *data, int64_t len,
                                  int64_t n, const int32_t *idx, int32_t *outv, int64_t *bad,
                                  uint32_t final_state[2])
{
    *bad = -1;
    if (len < 8 || (len & 1))
        return SCI_RANS_ESHORT;
    uint32_t x0 = sci_rans_rd16(data) | (sci_rans_rd16(data + 2) << 16);
    uint32_t x1 = sci_rans_rd16(data + 4) | (sci_rans_rd16(data + 6) << 16);
    if (x0 < SCI_RANS_LOW || x1 < SCI_RANS_LOW)
        return SCI_RANS_EINIT;
    sci_rans_reader r = {data + 8, data + len};
    const sci_rans_table *tab = T->tab; /* locals: the output stores cannot alias them */
    const int64_t nt = T->n_tables;
    int64_t k = 0;
    int rc;
    for (; k + 1 < n; k += 2) {
        if ((rc = sci_rans_dec_one(tab, nt, &x0, idx[k], &r, outv + k)))
            goto fail;
        if ((rc = sci_rans_dec_one(tab, nt, &x1, idx[k + 1], &r, outv + k + 1))) {
            k++;
            goto fail;
        }
    }
    if (k < n && (rc = sci_rans_dec_one(tab, nt, &x0, idx[k], &r, outv + k)))
        goto fail;
    final_state[0] = x0;
    final_state[1] = x1;
    if (r.p != r.end) {
        *bad = (r.end - r.p) / 2;
        return SCI_RANS_ETRAIL;
    }
    if (x0 != SCI_RANS_LOW || x1 != SCI_RANS_LOW)
        return SCI_RANS_ESTATE;
    return SCI_RANS_OK;
fail:
    *bad = k;
    return rc;
}

#undef SCI_RANS_RENORM

#endif

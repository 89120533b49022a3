# rANS coder over indexed CDF tables (private: use sci_edge.codec.rans).
# The wrapper validates the tables and explains what is wrong; this module
# checks them again, keeps its own copy, and checks table indexes and every
# byte it reads, so no input can make it read out of bounds.
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport malloc, free

cdef extern from "rans_core.h" nogil:
    ctypedef struct sci_rans_enc_slot:
        uint32_t rcp
    ctypedef struct sci_rans_table:
        int32_t nsym
    ctypedef struct sci_rans_tables:
        int64_t n_tables
        const sci_rans_table *tab
    int SCI_RANS_LOW
    int SCI_RANS_OK, SCI_RANS_ENOMEM, SCI_RANS_EINDEX, SCI_RANS_ESHORT, SCI_RANS_EINIT
    int SCI_RANS_ETRUNC, SCI_RANS_ECOUNT, SCI_RANS_ERANGE, SCI_RANS_ETRAIL, SCI_RANS_ESTATE
    int64_t sci_rans_bucket_entries(int64_t n_tables, const int32_t *length)
    int sci_rans_check(int64_t n_tables, int64_t stride, const int32_t *cdf,
                       const int32_t *length, int64_t *table, int64_t *slot)
    void sci_rans_build(int64_t n_tables, int64_t stride, const int32_t *cdf,
                        const int32_t *length, const int32_t *offset, sci_rans_table *tab,
                        int32_t *rows, sci_rans_enc_slot *enc, uint16_t *bucket)
    int sci_rans_encode(const sci_rans_tables *T, int64_t n, const int32_t *sym,
                        const int32_t *idx, uint16_t **words, int64_t *n_words,
                        uint32_t state[2], int64_t *bad)
    void sci_rans_write_stream(uint8_t *dst, const uint32_t state[2], const uint16_t *words,
                               int64_t n_words)
    int sci_rans_decode(const sci_rans_tables *T, const uint8_t *data, int64_t length,
                        int64_t n, const int32_t *idx, int32_t *outv, int64_t *bad,
                        uint32_t final_state[2])


def check_tables(const int32_t[:, ::1] cdf, const int32_t[::1] lengths):
    """(problem, table, slot) of the first bad table; problem 0 when all are good:
    1 length outside 3..max_len, 2 cdf[0] != 0, 3 cdf[len-1] != 65536,
    4 decreasing at slot, 5 zero frequency at slot."""
    cdef int64_t table = -1, slot = -1
    cdef int rc
    if lengths.shape[0] != cdf.shape[0]:
        raise ValueError("one length per table")
    if cdf.shape[0] == 0:
        return 0, -1, -1
    with nogil:
        rc = sci_rans_check(cdf.shape[0], cdf.shape[1], &cdf[0, 0], &lengths[0], &table, &slot)
    return rc, table, slot


cdef class Tables:
    """Coder data for (cdf rows, lengths, offsets), checked and copied, built once."""
    cdef sci_rans_tables t
    cdef sci_rans_table *_tab
    cdef int32_t *_rows
    cdef sci_rans_enc_slot *_enc
    cdef uint16_t *_bucket

    def __cinit__(self, const int32_t[:, ::1] cdf, const int32_t[::1] lengths,
                  const int32_t[::1] offset):
        cdef int64_t n = cdf.shape[0], stride = cdf.shape[1], entries = 0, i
        if lengths.shape[0] != n or offset.shape[0] != n or n < 1:
            raise ValueError("rANS tables: need one length and offset per table, and a table")
        problem, table, _ = check_tables(cdf, lengths)
        if problem:   # the wrapper says what is wrong; this guards the C code
            raise ValueError(f"rANS tables: CDF table {table} is not valid")
        for i in range(n):
            entries += lengths[i]
        self._tab = <sci_rans_table *>malloc(n * sizeof(sci_rans_table))
        self._rows = <int32_t *>malloc(entries * sizeof(int32_t))
        self._enc = <sci_rans_enc_slot *>malloc((entries - n) * sizeof(sci_rans_enc_slot))
        self._bucket = <uint16_t *>malloc(sci_rans_bucket_entries(n, &lengths[0]) *
                                          sizeof(uint16_t))
        if not (self._tab and self._rows and self._enc and self._bucket):
            raise MemoryError()
        with nogil:
            sci_rans_build(n, stride, &cdf[0, 0], &lengths[0], &offset[0], self._tab,
                           self._rows, self._enc, self._bucket)
        self.t.n_tables = n
        self.t.tab = self._tab

    def __dealloc__(self):
        free(self._tab)
        free(self._rows)
        free(self._enc)
        free(self._bucket)

    def encode(self, const int32_t[::1] symbols, const int32_t[::1] indexes):
        """-> bytes. symbols, indexes: flat, equal length (checked by the caller)."""
        cdef int64_t n = symbols.shape[0], n_words = 0, bad = -1
        cdef uint16_t *words = NULL
        cdef uint32_t state[2]
        cdef int rc
        cdef const int32_t *sp = &symbols[0] if n else NULL
        cdef const int32_t *ip = &indexes[0] if n else NULL
        if indexes.shape[0] != n:
            raise ValueError("symbols and indexes differ in length")
        with nogil:
            rc = sci_rans_encode(&self.t, n, sp, ip, &words, &n_words, state, &bad)
        if rc == SCI_RANS_ENOMEM:
            raise MemoryError()
        if rc == SCI_RANS_EINDEX:
            raise ValueError(f"table index {indexes[bad]} at position {bad} is out of range "
                             f"0..{self.t.n_tables - 1}")
        try:
            out = PyBytes_FromStringAndSize(NULL, 8 + 2 * n_words)
        except MemoryError:
            free(words)
            raise
        cdef uint8_t *b = <uint8_t *>PyBytes_AS_STRING(out)
        with nogil:
            sci_rans_write_stream(b, state, words, n_words)
        free(words)
        return out

    def decode(self, const uint8_t[::1] data, const int32_t[::1] indexes, int32_t[::1] out):
        """Fills out (flat, like indexes); raises ValueError on a bad stream."""
        cdef int64_t n = indexes.shape[0], length = data.shape[0], bad = -1
        cdef uint32_t final_state[2]
        cdef int rc
        cdef const uint8_t *dp = &data[0] if length else NULL
        cdef const int32_t *ip = &indexes[0] if n else NULL
        cdef int32_t *op = &out[0] if n else NULL
        if out.shape[0] != n:
            raise ValueError("out and indexes differ in length")
        with nogil:
            rc = sci_rans_decode(&self.t, dp, length, n, ip, op, &bad, final_state)
        if rc == SCI_RANS_OK:
            return
        if rc == SCI_RANS_EINDEX:
            raise ValueError(f"table index {indexes[bad]} at position {bad} is out of range "
                             f"0..{self.t.n_tables - 1}")
        if rc == SCI_RANS_ESHORT:
            if length < 8:
                raise ValueError(f"rANS stream truncated: {length} bytes, a stream has at least 8")
            raise ValueError(f"rANS stream corrupt: odd length {length} (the stream is made of "
                             "16-bit words)")
        if rc == SCI_RANS_EINIT:
            raise ValueError("rANS stream corrupt: an initial state is below 2^16")
        if rc == SCI_RANS_ETRUNC:
            raise ValueError(f"rANS stream truncated: out of data at symbol {bad} of {n}")
        if rc == SCI_RANS_ECOUNT:
            raise ValueError(f"rANS stream corrupt: escape at symbol {bad} has more than 9 "
                             "4-bit chunks")
        if rc == SCI_RANS_ERANGE:
            raise ValueError(f"rANS stream corrupt: symbol {bad} decodes outside int32")
        if rc == SCI_RANS_ETRAIL:
            raise ValueError(f"rANS stream corrupt: {2 * bad} bytes left after the last symbol")
        if rc == SCI_RANS_ESTATE:
            raise ValueError(f"rANS stream corrupt: final states ({final_state[0]:#x}, "
                             f"{final_state[1]:#x}) are not the initial {SCI_RANS_LOW:#x}")
        raise ValueError(f"rANS stream corrupt (code {rc})")

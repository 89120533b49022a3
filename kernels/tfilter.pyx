# Binarized temporal filters over bit-packed time (private: use sci_edge.edge.tfilter).
from cython.parallel cimport prange
from libc.stdint cimport int8_t, uint8_t, uint64_t, int64_t

cdef extern from "tfilter_core.h" nogil:
    void sci_tfilter_row_on(int path, int64_t n, const uint64_t *words, int C,
                            const uint64_t *pos, const uint64_t *sup, const float *alpha,
                            const float *bias, float *out_f, int8_t *out_i, int64_t plane)
    void sci_tfilter_pack_row(int64_t n, int L, const uint8_t *first, int64_t frame_stride,
                              uint64_t *out)
    int sci_tfilter_path_available(int path)
    int sci_tfilter_best_path()
    const char *sci_tfilter_path_name(int path)
    int SCI_TF_NEON

def pack_time(const uint8_t[:, :, :] spikes, uint64_t[:, ::1] words, int num_threads):
    """words[y, x] bit j = spikes[j, y, x] (j < 64). Any input strides."""
    cdef int64_t L = spikes.shape[0], H = spikes.shape[1], W = spikes.shape[2]
    cdef int64_t y, x, j
    cdef int threads = num_threads if num_threads > 0 else 1
    cdef bint rows_contiguous = spikes.strides[2] == 1
    with nogil:
        for y in prange(H, schedule="static", num_threads=threads):
            if rows_contiguous:
                sci_tfilter_pack_row(W, <int>L, &spikes[0, y, 0], spikes.strides[0],
                                     &words[y, 0])
                continue
            for x in range(W):
                words[y, x] = 0
            for j in range(L):  # frame-major, so each pass reads one contiguous row
                for x in range(W):
                    words[y, x] = words[y, x] | (<uint64_t>(spikes[j, y, x] & 1) << j)


def path_names():
    """{path id: name} of every loop this build knows."""
    return {k: sci_tfilter_path_name(k).decode() for k in range(SCI_TF_NEON + 1)}


def available_paths():
    """Ids of the loops this build can run on this CPU, best first."""
    best = sci_tfilter_best_path()
    rest = [k for k in range(SCI_TF_NEON, -1, -1) if k != best and sci_tfilter_path_available(k)]
    return [best] + rest


def filter_words(const uint64_t[:, ::1] words, const uint64_t[::1] pos, const uint64_t[::1] sup,
                 const float[::1] alpha, const float[::1] bias, float[:, :, ::1] out,
                 int num_threads, int path):
    """out[c, y, x] = (2*popcount(w & pos[c]) - popcount(w & sup[c])) * alpha[c] + bias[c]."""
    _filter(words, pos, sup, &alpha[0], &bias[0], &out[0, 0, 0], NULL, num_threads, path)


def filter_words_int8(const uint64_t[:, ::1] words, const uint64_t[::1] pos,
                      const uint64_t[::1] sup, int8_t[:, :, ::1] out, int num_threads, int path):
    """out[c, y, x] = 2*popcount(w & pos[c]) - popcount(w & sup[c]) (exact integers)."""
    _filter(words, pos, sup, NULL, NULL, NULL, &out[0, 0, 0], num_threads, path)


cdef void _filter(const uint64_t[:, ::1] words, const uint64_t[::1] pos, const uint64_t[::1] sup,
                  const float *alpha, const float *bias, float *out_f, int8_t *out_i,
                  int num_threads, int path) except *:
    """Rows in parallel on loop ``path`` (one of available_paths())."""
    cdef int64_t H = words.shape[0], W = words.shape[1]
    cdef int C = <int>pos.shape[0]
    cdef int64_t y
    cdef int threads = num_threads if num_threads > 0 else 1
    if not sci_tfilter_path_available(path):
        raise ValueError(f"filter loop {path} is not available here")
    if H == 0 or W == 0 or C == 0:
        return
    with nogil:
        for y in prange(H, schedule="static", num_threads=threads):
            sci_tfilter_row_on(path, W, &words[y, 0], C, &pos[0], &sup[0], alpha, bias,
                               out_f + y * W if out_f != NULL else NULL,
                               out_i + y * W if out_i != NULL else NULL, H * W)

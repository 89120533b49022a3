# Inter-spike-interval search for TFI reconstruction (private: use sci_edge.recon).
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, int32_t, int64_t


def spanning_spikes(const uint8_t[:, :, :] spikes, const int64_t[::1] times,
                    int32_t[:, :, ::1] prev, int32_t[:, :, ::1] next_, int num_threads):
    """For each query time t (ascending) and pixel: prev = index of the last
    spike at or before t (-1 if none), next_ = index of the first spike after
    t (T if none). Parallel over rows; each row is scanned forward once and
    backward once."""
    cdef int64_t T = spikes.shape[0], H = spikes.shape[1], W = spikes.shape[2]
    cdef int64_t K = times.shape[0]
    cdef int64_t y, x, t, kq
    cdef int threads = num_threads if num_threads > 0 else 1
    if K == 0 or H == 0 or W == 0:
        return
    with nogil:
        for y in prange(H, schedule="static", num_threads=threads):
            # prev[kq, y, :] serves as the running "last spike" row.
            for x in range(W):
                prev[0, y, x] = -1
            kq = 0
            t = 0
            while kq < K:
                while t <= times[kq] and t < T:
                    for x in range(W):
                        if spikes[t, y, x]:
                            prev[kq, y, x] = <int32_t>t
                    t = t + 1
                if kq + 1 < K:
                    for x in range(W):
                        prev[kq + 1, y, x] = prev[kq, y, x]
                kq = kq + 1
            for x in range(W):
                next_[K - 1, y, x] = <int32_t>T
            kq = K - 1
            t = T - 1
            while kq >= 0:
                while t > times[kq]:
                    for x in range(W):
                        if spikes[t, y, x]:
                            next_[kq, y, x] = <int32_t>t
                    t = t - 1
                if kq > 0:
                    for x in range(W):
                        next_[kq - 1, y, x] = next_[kq, y, x]
                kq = kq - 1

# Bit packing of binary spike frames, LSB-first, row-major (private: use sci_edge.io).
#
# A packed frame holds pixel k of the (optionally vertically flipped) frame in
# bit k % 8 of byte k // 8, the layout of SpikeCV-style .dat files.
from cython.parallel cimport prange
from libc.stdint cimport uint8_t, int64_t


def pack(const uint8_t[:, :, :] spikes, uint8_t[:, ::1] packed, bint flipud, int num_threads):
    """Pack (T, H, W) 0/1 bytes into (T, ceil(H*W/8)) bytes.

    Returns the largest input value seen, so the caller can reject non-binary
    input without a second pass."""
    cdef int64_t T = spikes.shape[0], H = spikes.shape[1], W = spikes.shape[2]
    cdef int64_t nbytes = packed.shape[1]
    cdef int64_t t, y, x, src_y, k, q
    cdef int r
    cdef uint8_t byte, val, vmax = 0
    cdef uint8_t[::1] frame_max = bytearray(T) if T > 0 else bytearray(1)
    cdef int threads = num_threads if num_threads > 0 else 1
    with nogil:
        for t in prange(T, schedule="static", num_threads=threads):
            frame_max[t] = 0
            if W % 8 == 0:
                # Rows start on byte boundaries: pack row by row.
                for y in range(H):
                    src_y = H - 1 - y if flipud else y
                    for q in range(W // 8):
                        byte = 0
                        for r in range(8):
                            val = spikes[t, src_y, q * 8 + r]
                            if val > frame_max[t]:
                                frame_max[t] = val
                            byte = byte | <uint8_t>((val & 1) << r)
                        packed[t, y * (W // 8) + q] = byte
            else:
                for q in range(nbytes):
                    byte = 0
                    for r in range(8):
                        k = q * 8 + r
                        if k < H * W:
                            y = k // W
                            x = k - y * W
                            src_y = H - 1 - y if flipud else y
                            val = spikes[t, src_y, x]
                            if val > frame_max[t]:
                                frame_max[t] = val
                            byte = byte | <uint8_t>((val & 1) << r)
                    packed[t, q] = byte
    for t in range(T):
        if frame_max[t] > vmax:
            vmax = frame_max[t]
    return vmax


def unpack(const uint8_t[:, :] packed, uint8_t[:, :, ::1] spikes, bint flipud, int num_threads):
    """Unpack (T, >= ceil(H*W/8)) bytes into (T, H, W) 0/1 bytes."""
    cdef int64_t T = spikes.shape[0], H = spikes.shape[1], W = spikes.shape[2]
    cdef int64_t t, y, x, dst_y, k, q
    cdef int r
    cdef uint8_t byte
    cdef int threads = num_threads if num_threads > 0 else 1
    with nogil:
        for t in prange(T, schedule="static", num_threads=threads):
            if W % 8 == 0:
                for y in range(H):
                    dst_y = H - 1 - y if flipud else y
                    for q in range(W // 8):
                        byte = packed[t, y * (W // 8) + q]
                        for r in range(8):
                            spikes[t, dst_y, q * 8 + r] = (byte >> r) & 1
            else:
                for k in range(H * W):
                    y = k // W
                    x = k - y * W
                    dst_y = H - 1 - y if flipud else y
                    spikes[t, dst_y, x] = (packed[t, k // 8] >> (k % 8)) & 1

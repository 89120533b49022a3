"""Feature codec: entropy coding, bitstream, integer entropy parameters."""

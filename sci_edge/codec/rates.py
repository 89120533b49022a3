"""Rates of a coded stream, from its real size (torch-free; the torch and the edge
encoders' results share them)."""
from __future__ import annotations


class CodedRates:
    """For a dataclass with bits, frames, num_steps, height, width and seconds."""

    @property
    def bpsp(self) -> float:
        """Bits per spike pixel: file bits / (spike steps covered x H x W); raw = 1."""
        return self.bits / max(1, self.num_steps * self.height * self.width)

    @property
    def bpp(self) -> float:
        """Bits per coded feature-frame pixel."""
        return self.bits / max(1, self.frames * self.height * self.width)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def rate_dict(self) -> dict:
        return {"path": self.path, "frames": self.frames, "bits": self.bits,
                "bpsp": self.bpsp, "bpp": self.bpp, "num_steps": self.num_steps,
                "height": self.height, "width": self.width, "seconds": self.seconds,
                "feature_frames_per_s": self.frames_per_s}

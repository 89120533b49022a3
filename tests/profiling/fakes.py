"""A small stand-in for sci_edge.profiling.modules' ModelProfile (same fields), with the
shipped FEM's counts at 256x256 (1.76 GMAC, 24.6 k parameters); the other numbers
(activation memory, bytes moved, latency, the cloud side) are made up."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FakeRow:
    name: str
    side: str
    macs: int
    params: int
    peak_activation_bytes: int
    bytes_moved: int
    per: str
    latency_s: dict = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        return {**asdict(self), "flops": self.flops}


@dataclass
class FakeProfile:
    rows: list
    features_per_output: int = 7

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows]}


FEM_MACS = 1_760_000_000
FEM_PARAMS = 24_600
FEM_BYTES = 20_000_000


def fake_profile(height: int = 256, width: int = 256, *, repeats: int = 3,
                 latency: bool = True, extra_end: bool = False) -> FakeProfile:
    scale = height * width / (256 * 256)
    lat = (lambda s: {"torch_fp32": s}) if latency else (lambda s: {})
    rows = [FakeRow("fem", "end", int(FEM_MACS * scale), FEM_PARAMS,
                    int(16_000_000 * scale), int(FEM_BYTES * scale), "feature frame",
                    lat(0.012)),
            FakeRow("analysis", "cloud", int(30e9 * scale), 900_000, int(200e6 * scale),
                    int(400e6 * scale), "output", lat(0.4)),
            FakeRow("head", "cloud", int(2e9 * scale), 50_000, int(30e6 * scale),
                    int(40e6 * scale), "output", lat(0.03))]
    if extra_end:
        rows.insert(1, FakeRow("encoder", "end", 500_000_000, 10_000, 4_000_000, 5_000_000,
                               "feature frame", lat(0.004)))
    return FakeProfile(rows)

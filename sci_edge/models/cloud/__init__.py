"""Cloud-side models: full precision, run on the server after decoding."""
from .analysis import AFR, AnalysisConfig, LongTermAnalysis
from .deform import DeformConv2d, deform_conv2d
from .flow import FlowEstimator, warp
from .heads import ClassificationHead, ReconstructionHead

__all__ = ["AFR", "AnalysisConfig", "ClassificationHead", "DeformConv2d", "FlowEstimator",
           "LongTermAnalysis", "ReconstructionHead", "deform_conv2d", "warp"]

"""Spike-camera simulation: the integrate-and-fire model and its noise sources."""
from .noise import CalibrationMaps, NoiseModel
from .simulator import SpikeSimulator, num_steps, packed_row_bytes, simulate, simulate_stream

__all__ = ["CalibrationMaps", "NoiseModel", "SpikeSimulator", "num_steps", "packed_row_bytes",
           "simulate", "simulate_stream"]

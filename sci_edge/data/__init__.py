"""Data sets: still images (photographs, dead leaves), camera motion, natural-scene spike
sequences, S-MNIST, REDS pairs."""
from .deadleaves import LEAF_SHAPES, dead_leaves
from .images import TEST_IMAGES, TRAIN_IMAGES, bundled_images, load_image, to_luminance
from .mnist import SMNIST, load_mnist, read_idx, stratified_split
from .motion import MOTION_KINDS, Motion, MotionParts, bilinear_sample, render, sample_coords
from .reds import RedsPair, RedsPairs
from .scenes import NaturalScenes, SpikeSequence, make_scene_sequence

__all__ = ["LEAF_SHAPES", "MOTION_KINDS", "Motion", "MotionParts", "NaturalScenes", "RedsPair",
           "RedsPairs", "SMNIST", "SpikeSequence", "TEST_IMAGES", "TRAIN_IMAGES",
           "bilinear_sample", "bundled_images", "dead_leaves", "load_image", "load_mnist",
           "make_scene_sequence", "read_idx", "render", "sample_coords", "stratified_split",
           "to_luminance"]

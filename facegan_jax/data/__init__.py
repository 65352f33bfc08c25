"""Datasets as uint8 arrays (N, H, W, C) at the model's resolution, prepared once and cached.

sources.py turns a --dataset name into its images (through tfds_prepare.py, folder.py and
images.py), cache.py keeps them as .npy (no pickle) so no image is decoded twice, and
pipeline.py feeds them to the training step; that last one needs only JAX, so the step and
the benchmarks import no TFDS, and training never imports TensorFlow.
"""

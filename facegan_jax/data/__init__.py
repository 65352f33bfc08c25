"""Datasets as uint8 arrays (N, H, W, C) at the model's resolution, prepared once and cached.

sources.py turns a --dataset name into its images along one line, source -> decode -> resize
-> cache: tfds_prepare.py (or folder.py and images.py) for the first two steps, preprocess.py
for the resize, cache.py for the .npy files (no pickle) that spare later runs the rest.
pipeline.py feeds the images to the training step; it needs only JAX, so the step and the
benchmarks import no TFDS, and training never imports TensorFlow.
"""

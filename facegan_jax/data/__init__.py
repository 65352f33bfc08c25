"""Datasets as uint8 arrays (N, H, W, C) at the model's resolution, prepared once and cached.

Sources (`--dataset`):
  synthetic_faces[/small]  rendered offline by the project (TFDS builder, no download)
  celeba_small             the Udacity zip of 64x64 CelebA crops (TFDS builder; download or
                           a manual copy of the zip or its folder)
  tfds:NAME[:SPLIT]        any TFDS image dataset, e.g. tfds:celeb_a, tfds:mnist
  folder:PATH              a directory tree or .zip of jpg/png/webp/bmp files

Every source ends as the same uint8 array, cached as .npy under the data dir (no pickle), so
training never decodes an image twice and never imports TensorFlow.
"""

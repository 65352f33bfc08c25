"""Does G copy its training set? Nearest-training-image distances of G's samples beside
those of images of the same split that G never saw.

  python main.py --flagfile=WORKDIR/flags.txt --mode=sample --num_samples=512
  python benchmarks/memorisation.py --workdir=WORKDIR

The run's flags.txt says which images it trained on: its dataset's train split, or the
--max_images of it that sources.training_indices draws, the others being the held-out ones
(synthetic_faces/small, 1,024 faces, is the first part of synthetic_faces, whose other faces
are its held-out ones). A G that memorised its set puts its samples closer to their nearest
training image than held-out images are (a metric computed against training images, as ours
are, cannot tell a copy from a good sample: a copying G scores at or below the real-vs-real
floor). Distances are L2 over the pixels in [0, 1].
"""

import dataclasses
import os
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax import config as config_lib  # noqa: E402
from facegan_jax.data import sources  # noqa: E402

flags.DEFINE_string('workdir', None, 'the training run, with its flags.txt', required=True)
flags.DEFINE_string('samples', None, "--mode=sample's samples.npz (default: WORKDIR's)")
FLAGS = flags.FLAGS


def nearest_distances(x, train):
  """L2 distance of each row of `x` to its nearest row of `train`."""
  squared = (x * x).sum(1)[:, None] + (train * train).sum(1)[None] - 2 * x @ train.T
  return np.sqrt(np.maximum(squared.min(1), 0))


def train_and_held_out(config, n):
  """(the run's training images, up to `n` images of the same split it never saw)."""
  split = sources.load_images(config, 'train')
  trained_on = sources.training_indices(config, len(split))
  held_out = np.setdiff1d(np.arange(len(split)), trained_on)[:n]
  if config.dataset == 'synthetic_faces/small' and not config.max_images:
    held_out = np.arange(len(split), len(split) + n)
    split = sources.load_images(dataclasses.replace(config, dataset='synthetic_faces'))
  train, held_out = split[trained_on], split[held_out]
  if not len(held_out):
    raise SystemExit(f'{config.dataset} has no images beyond the {len(train)} the run trained '
                     'on: train on --max_images of them to keep some held out')
  return train, held_out


def main(argv):
  del argv
  config = config_lib.Config(**config_lib.read_flagfile(os.path.join(FLAGS.workdir,
                                                                     'flags.txt')))
  fake = np.load(FLAGS.samples or os.path.join(FLAGS.workdir, 'samples.npz'))['images']
  train, held_out = train_and_held_out(config, len(fake))
  as_rows = lambda x: np.asarray(x).reshape(len(x), -1).astype(np.float32) / 255  # noqa: E731
  train_rows = as_rows(train)
  held = nearest_distances(as_rows(held_out), train_rows)
  generated = nearest_distances(as_rows(fake), train_rows)
  close = np.percentile(held, 5)
  print(f'{len(held_out)} held-out images: median distance to the nearest of {len(train)} '
        f'training images {np.median(held):.2f} (5th percentile {close:.2f})')
  print(f'{len(fake)} generated images: median {np.median(generated):.2f} (5th percentile '
        f'{np.percentile(generated, 5):.2f}); {np.mean(generated < close):.1%} closer than '
        "the held-out images' 5th percentile (5% if G draws like the data)")


if __name__ == '__main__':
  app.run(main)

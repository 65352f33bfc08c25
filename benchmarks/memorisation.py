"""Does G copy its training set? Nearest-training-image distances of G's samples beside
those of faces the renderer drew that G never saw.

  python main.py --flagfile=WORKDIR/flags.txt --mode=sample --num_samples=512
  python benchmarks/memorisation.py --samples=WORKDIR/samples.npz

For synthetic_faces/small, whose 1,024 training faces are the first ones of the full set's
training split: the other faces of the full set are the held-out draws. A G that memorised
its set puts its samples closer to their nearest training face than held-out faces are (a
metric computed against training images, as ours are, cannot tell a copy from a good sample:
a copying G scores at or below the real-vs-real floor). Distances are L2 over the 32x32x3
pixels in [0, 1].
"""

import os
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

flags.DEFINE_string('samples', None, "--mode=sample's samples.npz", required=True)
flags.DEFINE_string('data_dir', os.path.expanduser('~/tensorflow_datasets'),
                    'where synthetic_faces is prepared')
flags.DEFINE_integer('train_size', 1024, 'training faces: the first ones of the full set')
FLAGS = flags.FLAGS


def nearest_distances(x, train):
  """L2 distance of each row of `x` to its nearest row of `train`."""
  squared = (x * x).sum(1)[:, None] + (train * train).sum(1)[None] - 2 * x @ train.T
  return np.sqrt(np.maximum(squared.min(1), 0))


def main(argv):
  del argv
  fake = np.load(FLAGS.samples)['images']
  n, size = len(fake), fake.shape[1]
  full = np.load(os.path.join(FLAGS.data_dir, 'synthetic_faces', 'full', '1.0.0',
                              f'facegan-train-{size}x{size}x3.npy'), mmap_mode='r')
  as_rows = lambda x: np.asarray(x).reshape(len(x), -1).astype(np.float32) / 255  # noqa: E731
  train = as_rows(full[:FLAGS.train_size])
  held_out = nearest_distances(as_rows(full[FLAGS.train_size:FLAGS.train_size + n]), train)
  generated = nearest_distances(as_rows(fake), train)
  close = np.percentile(held_out, 5)
  print(f'{n} held-out faces: median distance to the nearest of {FLAGS.train_size} training '
        f'faces {np.median(held_out):.2f} (5th percentile {close:.2f})')
  print(f'{n} generated faces: median {np.median(generated):.2f} (5th percentile '
        f'{np.percentile(generated, 5):.2f}); {np.mean(generated < close):.1%} closer than '
        f"the held-out faces' 5th percentile (5% if G draws like the renderer)")


if __name__ == '__main__':
  app.run(main)

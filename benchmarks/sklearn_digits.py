"""Real handwritten digits to develop against: scikit-learn's 1,797 8x8 digits as 28x28 PNGs.

  python benchmarks/sklearn_digits.py DIR       # writes DIR/0/*.png ... DIR/9/*.png
  python benchmarks/sklearn_digits.py DIR 5000  # 5,000 jittered copies instead (jittered())

then train on them with `--dataset=folder:DIR`. scikit-learn ships the digits (the UCI
optdigits test set, 43 writers; no download), so tests and benchmarks can use real handwriting
offline. As in MNIST, each digit is scaled into a 20x20 box (bicubic) centred in a 28x28
black image, white ink, one class subfolder per digit. scikit-learn is a test/benchmark-only
dependency (requirements-test.txt): the package never imports this file.
"""

import os
import sys

import numpy as np
from PIL import Image

SIDE, BOX = 28, 20


def digit_images():
  """(uint8 images (1797, 28, 28), labels (1797,)) of scikit-learn's digits."""
  from sklearn.datasets import load_digits  # test/benchmark-only dependency
  digits = load_digits()
  images = []
  for image in digits.images:  # (8, 8) ink levels 0..16
    small = Image.fromarray(np.uint8(np.round(image * (255 / 16))))
    box = np.asarray(small.resize((BOX, BOX), Image.Resampling.BICUBIC))
    canvas = np.zeros((SIDE, SIDE), np.uint8)
    offset = (SIDE - BOX) // 2
    canvas[offset:offset + BOX, offset:offset + BOX] = box
    images.append(canvas)
  return np.stack(images), digits.target.astype(np.int64)


def jittered(images, labels, count, seed=0):
  """`count` new digits: random originals, each rotated (+-12 degrees), scaled (0.85-1.15) and
  shifted (+-2 pixels); a second, larger set of the same writers, to check that a recipe does
  not depend on the 1,797 images alone."""
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, len(images), count)
  out = np.empty((count, SIDE, SIDE), np.uint8)
  for i, row in enumerate(rows):
    angle, scale = rng.uniform(-12, 12), rng.uniform(0.85, 1.15)
    dx, dy = rng.uniform(-2, 2, size=2)
    c, s = np.cos(np.radians(angle)) / scale, np.sin(np.radians(angle)) / scale
    centre = (SIDE - 1) / 2  # PIL's affine maps output to input coordinates
    matrix = (c, s, centre - c * (centre + dx) - s * (centre + dy),
              -s, c, centre + s * (centre + dx) - c * (centre + dy))
    out[i] = np.asarray(Image.fromarray(images[row]).transform(
        (SIDE, SIDE), Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC))
  return out, labels[rows]


def write_tree(directory, count=0):
  """Writes the digits as DIR/<label>/<index>.png (once: an existing complete tree is kept);
  with `count`, that many jittered() digits instead. Returns `directory`."""
  done = os.path.join(directory, '.complete')
  if os.path.exists(done):
    return directory
  images, labels = digit_images()
  if count:
    images, labels = jittered(images, labels, count)
  for i, (image, label) in enumerate(zip(images, labels)):
    folder = os.path.join(directory, str(label))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image).save(os.path.join(folder, f'{i:04d}.png'))
  open(done, 'w').close()
  return directory


if __name__ == '__main__':
  if len(sys.argv) not in (2, 3):
    sys.exit(f'usage: python {sys.argv[0]} DIR [COUNT (jittered digits)]')
  count = int(sys.argv[2]) if len(sys.argv) == 3 else 0
  write_tree(sys.argv[1], count)
  print(f'{sys.argv[1]}: {count or 1797} digits in class folders 0-9')

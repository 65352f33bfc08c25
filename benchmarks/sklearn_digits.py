"""Real handwritten digits to develop against: scikit-learn's 1,797 8x8 digits as 28x28 PNGs.

  python benchmarks/sklearn_digits.py DIR     # writes DIR/0/*.png ... DIR/9/*.png

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


def write_tree(directory):
  """Writes the digits as DIR/<label>/<index>.png (once: an existing complete tree is kept);
  returns `directory`."""
  images, labels = digit_images()
  done = os.path.join(directory, '.complete')
  if os.path.exists(done):
    return directory
  for i, (image, label) in enumerate(zip(images, labels)):
    folder = os.path.join(directory, str(label))
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(image).save(os.path.join(folder, f'{i:04d}.png'))
  open(done, 'w').close()
  return directory


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(f'usage: python {sys.argv[0]} DIR')
  print(f'wrote {len(digit_images()[1])} digits into {write_tree(sys.argv[1])}')

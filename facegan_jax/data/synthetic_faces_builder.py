"""TFDS builder for `synthetic_faces`: procedural faces rendered offline.

Prepare once, then read TensorFlow-free through `as_data_source`:

  builder = SyntheticFaces(data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()
  faces = builder.as_data_source(split='train')
  faces[0]['image']  # uint8 (64, 64, 3)

Record `i` of a split is face `i` of that split's stream (shuffling is
disabled), so `faces[i]` equals `render_face(SEED, offset + i)` where offset is
0 for `train` and `TEST_INDEX_OFFSET` for `test`.

Two configs: `synthetic_faces/full` (the default: 32,000 train, 2,000 test) and
`synthetic_faces/small` (1,024 / 128, the same faces as the first ones of
`full`) for smoke runs; tests subclass with their own tiny config.
"""

import collections
import concurrent.futures
import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from facegan_jax.data import synthetic_faces
from facegan_jax.run.progress import Progress

# Changing these, or what render_face draws, changes the data: bump VERSION.
SEED = 20_240_601
TEST_INDEX_OFFSET = 10**6
IMAGE_SIZE = 64

# Large enough to amortise process round trips, small enough that both cores
# stay busy until the end of the 2,000-image test split.
_CHUNK_SIZE = 250


def render_chunk(start: int, stop: int) -> tuple[np.ndarray, list[dict[str, float]], int]:
  """Renders stream indices [start, stop) of the dataset seed; runs in a worker."""
  images, attributes = [], []
  for index in range(start, stop):
    image, attrs = synthetic_faces.render_face(SEED, index, IMAGE_SIZE)
    images.append(image)
    attributes.append(attrs)
  return np.stack(images), attributes, start


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  """Split sizes; every config renders the same stream, so smaller ones are prefixes."""
  num_train: int = 32_000
  num_test: int = 2_000


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Procedural 64x64 cartoon faces with their generating attributes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  BUILDER_CONFIGS = [
      SyntheticFacesConfig(name='full', description='32,000 train and 2,000 test faces.'),
      SyntheticFacesConfig(name='small', num_train=1_024, num_test=128,
                           description='The first 1,024 / 128 faces, for smoke runs.'),
  ]

  # TFDS only uses code_path to find a download-checksums file, and nothing is
  # downloaded here. Its default probes `importlib_resources`, which TFDS
  # 4.9.10 does not install, for any builder living in a package.
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    attribute_features = {
        name: tfds.features.Tensor(shape=(), dtype=np.float32)
        for name in synthetic_faces.ATTRIBUTES
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Procedurally rendered cartoon faces (numpy + PIL), varying head '
            'shape, pose, skin tone, hair, eyes, brows, nose, mouth, glasses, '
            'beard, background and lighting. Every generating parameter is '
            'stored under `attributes`; categorical ones as float codes '
            '(see facegan_jax.data.synthetic_faces).'),
        features=tfds.features.FeaturesDict({
            # Raw bytes: the default int64-list encoding costs ~1.3 ms per
            # image in the (single) writer process, more than rendering it.
            'image': tfds.features.Tensor(
                shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8,
                encoding=tfds.features.Encoding.BYTES),
            'attributes': tfds.features.FeaturesDict(attribute_features),
        }),
        supervised_keys=None,
        # Keeps record i == stream index i, so any face can be re-rendered
        # from its position; training shuffles at read time anyway.
        disable_shuffling=True,
        homepage=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download: the data is rendered.
    return {
        'train': self._generate_examples(0, self.builder_config.num_train),
        'test': self._generate_examples(TEST_INDEX_OFFSET, self.builder_config.num_test),
    }

  def _generate_examples(self, offset: int, num_examples: int) -> Iterator[tuple[int, dict]]:
    """Yields (stream index, example) in index order, rendering on all cores."""
    chunks = iter([(start, min(start + _CHUNK_SIZE, offset + num_examples))
                   for start in range(offset, offset + num_examples, _CHUNK_SIZE)])
    num_workers = os.cpu_count() or 1
    # Spawn, not fork: the parent may already hold JAX or TFDS threads, which
    # fork would copy in an arbitrary state.
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers, mp_context=multiprocessing.get_context('spawn'),
    ) as pool:
      # A bounded window of chunks in flight: pool.map would submit them all,
      # and rendered images pile up in memory while TFDS writes (~0.4 GB).
      pending = collections.deque(
          pool.submit(render_chunk, *chunk)
          for chunk in itertools.islice(chunks, 2 * num_workers))
      split = 'test' if offset else 'train'
      progress = Progress(f'Rendering synthetic_faces ({split})', num_examples, 'faces')
      while pending:
        images, attributes, start = pending.popleft().result()
        if (chunk := next(chunks, None)) is not None:
          pending.append(pool.submit(render_chunk, *chunk))
        for i, (image, attrs) in enumerate(zip(images, attributes)):
          yield start + i, {'image': image, 'attributes': attrs}
        progress(start + len(images) - offset)

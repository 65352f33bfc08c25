"""TFDS builder for `celeba_small`: the Udacity face-generation project's CelebA crops.

The archive, processed-celeba-small.zip (~32k 64x64 face JPEGs), comes from
`URL` through the TFDS download manager, or from a manual directory holding the
zip or its extracted folder:

  builder = CelebaSmall(data_dir=data_dir, file_format='array_record',
                        source=path_or_none)
  builder.download_and_prepare()
  faces = builder.as_data_source(split='train')
  faces[0]['image']  # uint8 (64, 64, 3)

Unreadable files are skipped, counted and listed in the dataset's metadata
(`builder.info.metadata['skipped']`); more than `max_bad_fraction` of them stops
preparation with an error naming a few.
"""

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from facegan_jax.data import images

URL = ('https://s3.amazonaws.com/video.udacity-data.com/topher/2018/November/'
       '5be7eb6f_processed-celeba-small/processed-celeba-small.zip')
FILENAMES = ('processed-celeba-small.zip', 'processed_celeba_small')
IMAGE_SIZE = 64


class CelebaSmall(tfds.core.GeneratorBasedBuilder):
  """CelebA faces cropped and resized to 64x64 by the Udacity project."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Download {URL} and put processed-celeba-small.zip (or the processed_celeba_small '
      'folder it extracts to) in the manual directory.')
  # No checksums file ships with the project (see synthetic_faces_builder.py).
  code_path = None

  def __init__(self, *, source=None, max_bad_fraction=0.01, **kwargs):
    self._source = source
    self._max_bad_fraction = max_bad_fraction
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='CelebA face crops at 64x64 from the Udacity deep learning nanodegree.',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # record i is the i-th file by name
        homepage='https://github.com/udacity/deep-learning-v2-pytorch',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    # A manual copy when the caller found one; else the download (which fails offline: the
    # caller turns that into a message naming the manual directory).
    source = self._source or dl_manager.download(URL)
    return {'train': self._generate_examples(str(source))}

  def _generate_examples(self, source: str) -> Iterator[tuple[int, dict]]:
    faces, skipped = images.prepare(images.list_images(source), IMAGE_SIZE, 3,
                                    max_bad_fraction=self._max_bad_fraction)
    self.info.metadata['skipped'] = [f'{name}: {why}' for name, why in skipped]
    for i, face in enumerate(faces):
      yield i, {'image': face}

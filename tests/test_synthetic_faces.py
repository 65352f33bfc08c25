"""Tests for the synthetic face renderer and its TFDS builder."""

import sys

import numpy as np
import pytest

from facegan_jax.data import synthetic_faces
from facegan_jax.data import synthetic_faces_builder
from facegan_jax.data.synthetic_faces import ATTRIBUTES, render_face


class TinySyntheticFaces(synthetic_faces_builder.SyntheticFaces):
  """A few faces per split so the round trip takes about a second."""

  BUILDER_CONFIGS = [synthetic_faces_builder.SyntheticFacesConfig(
      name='tiny', num_train=40, num_test=8)]


@pytest.fixture(scope='module')
def faces():
  return [render_face(seed=7, index=i) for i in range(200)]


def test_same_seed_and_index_give_identical_faces():
  image_a, attrs_a = render_face(3, 11)
  image_b, attrs_b = render_face(3, 11)
  assert image_a.tobytes() == image_b.tobytes()
  assert attrs_a == attrs_b


def test_different_index_or_seed_gives_a_different_face():
  image = render_face(3, 11)[0]
  assert not np.array_equal(image, render_face(3, 12)[0])
  assert not np.array_equal(image, render_face(4, 11)[0])


def test_rendering_ignores_global_rng_state():
  np.random.seed(0)
  image_a = render_face(5, 1)[0]
  np.random.seed(1)
  assert np.array_equal(image_a, render_face(5, 1)[0])


@pytest.mark.parametrize('size', [32, 64])
def test_image_shape_dtype_and_attribute_keys(size):
  image, attrs = render_face(0, 0, size=size)
  assert image.shape == (size, size, 3)
  assert image.dtype == np.uint8
  assert tuple(attrs) == ATTRIBUTES
  assert all(isinstance(value, float) for value in attrs.values())


def test_every_attribute_varies(faces):
  table = np.array([[attrs[name] for name in ATTRIBUTES] for _, attrs in faces])
  constant = [name for name, std in zip(ATTRIBUTES, table.std(axis=0)) if std == 0]
  assert not constant


def test_categorical_attributes_are_valid_codes(faces):
  for _, attrs in faces:
    assert attrs['hair_style'] in range(len(synthetic_faces.HAIR_STYLES))
    assert attrs['glasses'] in range(len(synthetic_faces.GLASSES))
    assert attrs['beard'] in (0.0, 1.0)


def test_images_are_not_degenerate(faces):
  images = np.stack([image for image, _ in faces]).astype(np.float32)
  assert images.reshape(len(faces), -1, 3).std(axis=1).mean(axis=1).min() > 10
  assert len({image.tobytes() for image, _ in faces}) == len(faces)


def test_tfds_round_trip_matches_renderer_without_tensorflow(tmp_path):
  builder = TinySyntheticFaces(data_dir=str(tmp_path), file_format='array_record')
  builder.download_and_prepare()
  assert 'tensorflow' not in sys.modules

  train = builder.as_data_source(split='train')
  test = builder.as_data_source(split='test')
  assert (len(train), len(test)) == (40, 8)

  for source, index, stream_index in [
      (train, 17, 17),
      (test, 5, synthetic_faces_builder.TEST_INDEX_OFFSET + 5),
  ]:
    expected_image, expected_attrs = render_face(synthetic_faces_builder.SEED, stream_index)
    example = source[index]
    np.testing.assert_array_equal(example['image'], expected_image)
    for name in ATTRIBUTES:
      assert example['attributes'][name] == np.float32(expected_attrs[name])
  assert 'tensorflow' not in sys.modules

"""The synthetic_faces attribute network: it learns, is cached, and its metrics see shifts."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from facegan_jax.config import Config
from facegan_jax.data import preprocess, sources, synthetic_faces
from facegan_jax.evaluation import face_attributes, parallel


@pytest.fixture(scope='module')
def trained(data_dir, attribute_net_cache):
  """The network trained on synthetic_faces/small (160 steps) and its record, then loaded
  again from the cache, and the config.

  It trains once per test session (conftest's attribute_net_cache, in a subprocess, with
  XLA's optimisations) and is loaded here from the cache it wrote.
  """
  config = Config(dataset='synthetic_faces/small', data_dir=data_dir, resolution=32)
  with open(os.path.join(attribute_net_cache, 'training.json')) as f:
    record = json.load(f)
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('XDG_CACHE_HOME', attribute_net_cache)
    model, again = face_attributes.load_or_train(config)
  return model, record, again, config


def test_learns_to_read_attributes_and_is_cached(trained):
  model, record, again, config = trained
  assert not record['cached'] and again['cached']
  assert record['sha256'] == again['sha256'] and record['train_steps'] == 160
  assert set(record['r2']) == set(face_attributes.CONTINUOUS)
  # Held-out faces: position, skin and background colour are read well after 160 steps.
  for name in ('head_x', 'skin_r', 'bg_g'):
    assert record['r2'][name] > 0.5, (name, record['r2'][name])
  # Better than always guessing the most frequent class.
  test_attributes = np.asarray(sources.load_attributes(config, 'test'))
  for i, name in enumerate(face_attributes.CATEGORICAL):
    codes = test_attributes[:, synthetic_faces.ATTRIBUTES.index(name)].astype(int)
    assert record['accuracy'][name] > np.bincount(codes).max() / len(codes), name
  # The reloaded network reads held-out faces as well as the trained one did.
  reread = face_attributes._quality(model, np.asarray(sources.load_images(config, 'test')),
                                    np.array(record['mean']), np.array(record['std']),
                                    *face_attributes.targets(test_attributes))
  assert abs(reread['mean_r2'] - record['mean_r2']) < 1e-4


def test_metrics_are_zero_for_the_same_faces_and_see_a_missing_attribute(trained):
  model, record, _, config = trained
  images = np.asarray(sources.load_images(config, 'train'))
  attributes = np.asarray(sources.load_attributes(config, 'train'))
  glasses = attributes[:, synthetic_faces.ATTRIBUTES.index('glasses')]
  real, pool = images[:512], images[512:]
  real_read = face_attributes.read_images(model, real, 3)

  same = face_attributes.metrics(model, record, real_read, real, 3)
  assert abs(same['domain_fd']['value']) < 1e-6
  assert same['attr_w1']['value'] == 0 and same['attr_tv']['value'] == 0

  def tv(fakes):
    return face_attributes.metrics(model, record, real_read, fakes, 3)['attr_tv']

  without = pool[glasses[512:] == 0][:300]
  alike = pool[:300]
  # ~28% of faces wear glasses: a generator that never draws them is off by about that much.
  assert tv(without)['per_attribute']['glasses'] > 0.15
  assert tv(without)['per_attribute']['glasses'] > 3 * tv(alike)['per_attribute']['glasses']
  # At 16x16 (resized to the network's 32x32 as the data is) the same faces still match best.
  small = lambda x: preprocess.to_model_images(x, 16, 3)  # noqa: E731
  assert (face_attributes.metrics(model, record, real_read, small(alike), 3)['domain_fd']
          ['value'] < face_attributes.metrics(model, record, real_read, small(without), 3)
          ['domain_fd']['value'])


def test_features_on_two_devices_equal_one():
  assert jax.local_device_count() == 2
  model = face_attributes.AttributeNet(3, rngs=nnx.Rngs(1))
  images = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), np.uint8)
  split = parallel.map_batches(lambda x: face_attributes._forward(model, x), images, 2)
  whole = face_attributes._forward(model, jax.device_put(images, jax.devices()[0]))
  assert len(split) == len(whole) and split[0].shape == (7, face_attributes.FEATURES)
  assert max(float(np.abs(a - np.asarray(b)).max()) for a, b in zip(split, whole)) < 1e-5

"""The on-device input path: epoch order, batch drawing, preprocessing."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from PIL import Image

from facegan_jax.data import pipeline, preprocess
from facegan_jax.mesh import make_mesh


def test_each_epoch_is_a_permutation_and_epochs_differ():
  key = jax.random.PRNGKey(0)
  def epoch(e):
    order = pipeline.epoch_order(key, e, 10)
    return np.concatenate([np.asarray(pipeline.batch_indices(order, 3 * e + s, 3))
                           for s in range(3)])
  first, second = epoch(0), epoch(1)
  # 10 examples, batch 3: 3 steps per epoch, one example left out each epoch.
  assert len(set(first)) == 9 and len(set(second)) == 9
  assert set(first) <= set(range(10))
  assert not np.array_equal(first, second)
  np.testing.assert_array_equal(epoch(0), first)  # a pure function of (key, step)


def test_local_batch_is_the_global_batch_on_one_and_two_devices():
  images = np.random.default_rng(0).integers(0, 256, (11, 4, 4, 3), dtype=np.uint8)
  indices = jnp.array([10, 0, 5, 6, 3, 9])
  for n in (1, 2):
    mesh = make_mesh(n)
    data = pipeline.shard_dataset(images, mesh)
    fn = jax.jit(jax.shard_map(lambda d: pipeline.local_batch(d, indices), mesh=mesh,
                               in_specs=P('data'), out_specs=P('data')))
    batch = np.asarray(fn(data))
    expected = images[np.asarray(indices)].astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(batch, expected, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(pipeline.to_uint8(batch), images[np.asarray(indices)])


def test_preprocess_center_crops_resizes_and_converts():
  wide = np.zeros((20, 40, 3), np.uint8)
  wide[:, 10:30] = 200  # the centered square is bright, the sides dark
  out = preprocess.to_model_images([wide], 8, 3)
  assert out.shape == (1, 8, 8, 3) and out.dtype == np.uint8
  assert out.min() > 190
  gray = preprocess.to_model_images([wide], 8, 1)
  assert gray.shape == (1, 8, 8, 1)
  expected = np.asarray(Image.fromarray(wide[:, 10:30]).convert('L').resize(
      (8, 8), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(gray[0, ..., 0], expected)


def test_fits_on_devices_by_size():
  mesh = make_mesh(1)
  assert pipeline.fits_on_devices(np.zeros((64, 8, 8, 3), np.uint8), mesh)
  # A 10 TB stand-in (a broadcast view: no memory behind it).
  huge = np.broadcast_to(np.zeros((), np.uint8), (10**7, 1000, 1000))
  assert not pipeline.fits_on_devices(huge, mesh)

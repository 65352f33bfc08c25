"""The train step: it learns, and it is the same on one and two devices."""

from tests.conftest import run_python

TRAIN_SNIPPET = '''
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from facegan_jax import config as config_lib, train
from facegan_jax.data import pipeline

def run(num_devices, steps, images, **overrides):
  config = config_lib.Config(**{**dict(
      model='dcgan', resolution=16, conv_dim=8, z_dim=16, batch_size=8, g_first_bn=True,
      num_devices=num_devices), **overrides})
  mesh = train.make_mesh(config)
  setup = train.make_setup(config)
  state = jax.jit(lambda: train.init_state(config, setup),
                  out_shardings=NamedSharding(mesh, P()))()
  step_fn = train.make_train_fn(config, setup, mesh)
  data = pipeline.shard_dataset(images, mesh)
  history = []
  for step in range(steps):
    epoch = step // (len(images) // config.batch_size)
    order = jax.device_put(pipeline.epoch_order(train.data_key(state), epoch, len(images)),
                           NamedSharding(mesh, P()))
    state, metrics = step_fn(state, data, order)
    history.append({k: float(v) for k, v in metrics.items()})
  return jax.device_get(state), history
'''


def test_one_and_two_devices_give_the_same_run():
  """Same global batch and seed: same losses and parameters (BatchNorm and dropout synced)."""
  out = run_python(TRAIN_SNIPPET + '''
rng = np.random.default_rng(0)
for overrides in (dict(), dict(model='mlp', resolution=28, channels=1, conv_dim=16)):
  r = overrides.get('resolution', 16)
  images = rng.integers(0, 256, (20, r, r, overrides.get('channels', 3)), dtype=np.uint8)
  (s1, m1), (s2, m2) = (run(n, 4, images, **overrides) for n in (1, 2))
  for a, b in zip(m1, m2):
    for k in ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'):
      assert abs(a[k] - b[k]) <= 1e-5 * max(1, abs(a[k])), (overrides, k, a[k], b[k])
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), s1, s2))
  assert max(diffs) < 1e-5, max(diffs)
  assert m1[0]['d_loss'] != m1[-1]['d_loss']  # the parameters did move
print('ok')
''', devices=2)
  assert out.strip().endswith('ok')


def test_discriminator_learns_to_separate_real_from_fake():
  """With G frozen (lr_g ~ 0), D's real/fake scores pull apart within a few steps."""
  out = run_python(TRAIN_SNIPPET + '''
rng = np.random.default_rng(0)
# "Real" images: smooth bright blobs, unlike an untrained G's output.
yy, xx = np.mgrid[:16, :16]
blob = 255 * np.exp(-((yy - 8)**2 + (xx - 8)**2) / 20)
images = np.clip(blob[None, :, :, None] + rng.normal(0, 10, (32, 16, 16, 3)), 0, 255)
_, history = run(1, 30, images.astype(np.uint8), lr_g=1e-12, lr_d=1e-3, batch_size=16)
first, last = history[0], history[-1]
print(first['d_real'] - first['d_fake'], last['d_real'] - last['d_fake'], last['d_loss'])
''')
  gap_before, gap_after, d_loss = map(float, out.split()[-3:])
  assert gap_before < 0.2
  assert gap_after > 0.8  # D scores real ~1 and fake ~0
  assert d_loss < 0.3

"""The train step and its compiled call: it learns, and it is the same on one and two
devices and for any number of steps per call."""

import json

from tests.conftest import run_python

TRAIN_SNIPPET = '''
import jax, jax.numpy as jnp, numpy as np
from facegan_jax import config as config_lib, mesh as mesh_lib, state as state_lib, step as step_lib
from facegan_jax.data import pipeline

def run(num_devices, steps, images, static_steps=None, **overrides):
  config = config_lib.Config(**{**dict(
      model='dcgan', resolution=16, conv_dim=8, z_dim=16, batch_size=8, g_first_bn=True,
      num_devices=num_devices), **overrides})
  mesh = mesh_lib.make_mesh(config.num_devices)
  state = jax.jit(lambda: state_lib.init_state(config),
                  out_shardings=mesh_lib.replicated(mesh))()
  step_fn = step_lib.make_train_fn(config, mesh, static_steps=static_steps)
  inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), 0)
  history = []
  for step in range(0, steps, config.steps_per_call):
    state, metrics = step_fn(state, inputs(step, config.steps_per_call), config.steps_per_call)
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


def test_bf16_training_stays_finite_and_tracks_fp32():
  """--precision=bf16: bfloat16 compute, float32 parameters, optimizer state, BatchNorm
  statistics and losses; over 30 steps the losses follow the float32 run's."""
  out = run_python(TRAIN_SNIPPET + '''
import json
rng = np.random.default_rng(0)
report = {}
for overrides in (dict(), dict(model='mlp', resolution=28, channels=1, conv_dim=16)):
  r = overrides.get('resolution', 16)
  images = rng.integers(0, 256, (64, r, r, overrides.get('channels', 3)), dtype=np.uint8)
  (s32, m32), (s16, m16) = (run(1, 30, images, precision=p, **overrides)
                            for p in ('fp32', 'bf16'))
  leaves = jax.tree.leaves(s16)
  assert {str(x.dtype) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {'float32'}
  assert all(np.isfinite(x).all() for x in leaves)
  report[overrides.get('model', 'dcgan')] = max(
      abs(a[k] - b[k]) for a, b in zip(m32, m16) for k in ('d_loss', 'g_loss'))
print(json.dumps(report))
''')
  gaps = json.loads(out.strip().splitlines()[-1])
  # bf16 keeps 8 bits of mantissa; measured gaps: 0.0015 (dcgan) and 0.0004 (mlp) on losses
  # of ~0.7-1.4.
  assert gaps['dcgan'] < 0.02 and gaps['mlp'] < 0.02, gaps


def test_several_steps_per_call_give_the_one_step_run():
  """Three steps per call (crossing an epoch inside a call) are the same run as one step per
  call, bit for bit, on 2 devices: the same state and the same metrics at every third step
  (tests/test_main.py checks main.py's calls on 1 device under XLA's default flags)."""
  out = run_python(TRAIN_SNIPPET + '''
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)  # 8 steps per epoch
s1, m1 = run(2, 12, images, steps_per_call=1)
for static_steps in (False, True):  # the count as an argument (CPU, TPU) or static (GPU)
  s3, m3 = run(2, 12, images, static_steps, steps_per_call=3)
  assert len(m3) == 4
  for a, b in zip(m1[2::3], m3):
    assert a == b, (static_steps, a, b)
  diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), s1, s3))
  print(max(diffs))
''', devices=2)
  assert [float(x) for x in out.split()[-2:]] == [0, 0]

"""Where a compiled train step spends its time: XLA's ops, summed over a few traced steps.

  PYTHONPATH=. .venv/bin/python benchmarks/profile_step.py [--preset=dcgan64] [--steps=3]

Times --steps steps, then traces as many of `step.make_train_fn` on synthetic data with
jax.profiler, then prints the ops with the most time per step (op kind, output shape, the JAX op it came from) and the
page faults per step. On CPU, convolutions run by XLA's own emitter appear only by their
dispatch, so the rest of the step (wall time minus the listed ops) is mostly convolution.
"""

import collections
import glob
import gzip
import json
import re
import resource
import tempfile
import time

from facegan_jax.run import runtime

runtime.configure()  # as main.py does

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from facegan_jax import config as config_lib  # noqa: E402
from facegan_jax import presets  # noqa: E402
from facegan_jax import mesh as mesh_lib, state as state_lib, step as step_lib  # noqa: E402
from facegan_jax.data import pipeline  # noqa: E402

flags.DEFINE_string('preset', 'dcgan64', 'preset from facegan_jax/config.py')
flags.DEFINE_integer('batch_size', 64, 'global batch size')
flags.DEFINE_integer('steps', 3, 'traced steps')
flags.DEFINE_integer('top', 25, 'ops to list')
flags.DEFINE_bool('trace', True, 'after timing --steps untraced steps, trace --steps more')
flags.DEFINE_string('conv_impl', 'auto', 'forms of the convolutions: auto, xla or a form of '
                    'facegan_jax/ops/forms.py')
flags.DEFINE_string('precision', 'fp32', 'fp32 or bf16')
flags.DEFINE_multi_string('set', [], 'a Config field over the preset, NAME=VALUE, repeatable: '
                          '--set=model=r3gan --set=widths=32,32,32,16 --set=loss=rpgan')
flags.DEFINE_string('hlo_out', None, 'also write the compiled step\'s HLO text to this file')
FLAGS = flags.FLAGS


def overrides(items):
  """{field: value} of --set's NAME=VALUE items, each value of its field's default's type."""
  values = {}
  for item in items:
    name, text = item.split('=', 1)
    default = getattr(config_lib.Config, name)
    values[name] = (text.lower() == 'true' if isinstance(default, bool) else
                    type(default)(text) if isinstance(default, (int, float)) else text)
  return values


def main(argv):
  del argv
  config = presets.preset(FLAGS.preset, batch_size=FLAGS.batch_size,
                             conv_impl=FLAGS.conv_impl, precision=FLAGS.precision,
                             **overrides(FLAGS.set))
  mesh = mesh_lib.make_mesh(config.num_devices)
  shape = (4 * pipeline.images_per_step(config), config.resolution, config.resolution,
           config.channels)
  images = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
  dataset = pipeline.shard_dataset(images, mesh)
  order = jax.device_put(  # this epoch's order and the next's (the same here)
      np.stack([pipeline.epoch_order(jax.random.PRNGKey(0), 0, len(images))] * 2),
      NamedSharding(mesh, P()))
  step_fn = step_lib.make_train_fn(config, mesh)
  one = 1
  state = state_lib.fresh_state(config, NamedSharding(mesh, P()))
  for _ in range(3):  # compile, and let the allocator settle
    state, _ = step_fn(state, (dataset, order), one)
  jax.block_until_ready(state)
  hlo = step_fn.lower(state, (dataset, order), one).compile().as_text()
  if FLAGS.hlo_out:
    with open(FLAGS.hlo_out, 'w') as f:
      f.write(hlo)

  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  times = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    state, _ = step_fn(state, (dataset, order), one)
    jax.block_until_ready(state)
    times.append(time.perf_counter() - start)
  untraced_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / FLAGS.steps
  print(f'{FLAGS.preset} batch {FLAGS.batch_size}: {1e3 * min(times):.0f} ms/step untraced '
        f'(fastest of {FLAGS.steps}; mean {1e3 * np.mean(times):.0f}), '
        f'{untraced_faults:.0f} page faults/step', flush=True)
  if not FLAGS.trace:
    return

  with tempfile.TemporaryDirectory() as trace_dir:
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(FLAGS.steps):
        state, _ = step_fn(state, (dataset, order), one)
      jax.block_until_ready(state)
    wall = (time.perf_counter() - start) / FLAGS.steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / FLAGS.steps
    with gzip.open(glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True)[0]) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events

  ops = {}  # HLO instruction name -> (output shape, originating JAX op)
  for line in hlo.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ', line)
    if m:
      source = re.search(r'op_name="([^"]+)"', line)
      ops[m.group(1)] = (m.group(2).split('{')[0], source.group(1) if source else '')
  # On GPUs the device's kernels name the HLO op they run in args.hlo_op (the host's events
  # only launch them); on CPU the host's events are the ops.
  timed = [e for e in events if e.get('ph') == 'X']
  kernels = [e for e in timed if 'hlo_op' in e.get('args', {})]
  per_op = collections.Counter()
  for e in kernels or timed:
    name = e['args']['hlo_op'] if kernels else e['name']
    if name in ops:
      per_op[name] += e['dur'] / 1e3 / FLAGS.steps
  if not per_op:  # names this parser does not know: the raw events, longest first
    raw = collections.Counter()
    for e in timed:
      raw[e['name']] += e['dur'] / 1e3 / FLAGS.steps
    print('no event matched an HLO op; the longest events (ms/step):')
    for name, ms in raw.most_common(FLAGS.top):
      print(f'{ms:8.1f}  {name[:100]}')
  per_kind = collections.Counter()
  for name, ms in per_op.items():
    per_kind[re.sub(r'[.\d]+$', '', name)] += ms

  print(f'{FLAGS.preset} batch {FLAGS.batch_size} {FLAGS.precision}: {1e3 * wall:.0f} ms/step (traced), '
        f'{faults:.0f} page faults/step, listed ops {sum(per_op.values()):.0f} ms/step')
  print('\nby kind (ms/step)')
  for kind, ms in per_kind.most_common(12):
    print(f'{ms:8.1f}  {kind}')
  print('\ntop ops (ms/step)')
  for name, ms in per_op.most_common(FLAGS.top):
    shape, source = ops[name]
    print(f'{ms:8.1f}  {name:<32} {shape:<26} {source[-70:]}')


if __name__ == '__main__':
  app.run(main)

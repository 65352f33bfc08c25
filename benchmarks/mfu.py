"""Training speed and model FLOP utilisation per preset, batch size and precision, beside
PyTorch (eager, and torch.compile where it works) on the same device, in one run.

  python benchmarks/mfu.py [--presets=udacity32,dcgan64] [--batch_sizes=64,1024]
      [--precisions=fp32,bf16] [--steps_per_call=1] [--write]

The JAX side is step.make_train_fn, main.py's own compiled step, on random uint8 images
already on the devices (no TFDS, no files: the core dependencies only). FLOPs per step come
from XLA's cost analysis of the compiled call; MFU divides the achieved FLOP/s by the device's
dense peak for the dtype (PEAK_TFLOPS; on CPUs, the best matmul rate measured here and now).
With --write, the table is added to benchmarks/RESULTS.md with the device name and date.
"""

import dataclasses
import datetime
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax.run import runtime  # noqa: E402

runtime.configure()  # main.py's CPU settings, before JAX starts (PyTorch shares the allocator)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from benchmarks import matmul_peak  # noqa: E402
from facegan_jax import mesh as mesh_lib, presets, state as state_lib  # noqa: E402
from facegan_jax import step as step_lib  # noqa: E402
from facegan_jax.data import pipeline  # noqa: E402

flags.DEFINE_list('presets', ['udacity32', 'dcgan64'], 'presets from facegan_jax/presets.py')
flags.DEFINE_list('batch_sizes', ['64'], 'global batch sizes')
flags.DEFINE_list('precisions', ['fp32'], 'fp32 and/or bf16')
flags.DEFINE_integer('steps_per_call', 1, 'training steps per compiled call')
flags.DEFINE_integer('calls', 10, 'timed calls (after 2 untimed ones); the best of --rounds')
flags.DEFINE_integer('rounds', 3, 'timed repetitions, alternating with PyTorch eager and '
                     'compiled; the fastest of each is reported')
flags.DEFINE_bool('torch', True, 'also time the PyTorch reference when torch is installed')
flags.DEFINE_integer('torch_steps', 20, 'timed PyTorch iterations (after 3 warm-up ones)')
flags.DEFINE_bool('torch_compile', True, 'with --torch, also time it under torch.compile')
flags.DEFINE_float('peak_tflops', None, 'the device\'s dense peak for the dtype, if not in '
                   'PEAK_TFLOPS')
flags.DEFINE_bool('write', False, 'append the table to benchmarks/RESULTS.md')
FLAGS = flags.FLAGS

# Dense peak TFLOP/s by device kind and dtype, from the vendors' data sheets (fp32 on NVIDIA
# tensor cores is TF32, which XLA uses for float32 matmuls and convolutions by default).
PEAK_TFLOPS = {
    'NVIDIA H100 80GB HBM3': dict(fp32=494.7, bf16=989.4),
    'NVIDIA H200': dict(fp32=494.7, bf16=989.4),
    'NVIDIA A100-SXM4-80GB': dict(fp32=156.0, bf16=312.0),
    'NVIDIA A100-SXM4-40GB': dict(fp32=156.0, bf16=312.0),
    'TPU v4': dict(fp32=275.0, bf16=275.0),
    'TPU v5 lite': dict(fp32=197.0, bf16=197.0),
}


def peak_tflops(device, precision):
  """(peak TFLOP/s of one device, where it comes from)."""
  if FLAGS.peak_tflops:
    return FLAGS.peak_tflops, '--peak_tflops'
  if device.device_kind in PEAK_TFLOPS:
    return PEAK_TFLOPS[device.device_kind][precision], 'data sheet'
  if device.platform == 'cpu':
    dtype = jnp.bfloat16 if precision == 'bf16' else jnp.float32
    return matmul_peak.best_flops(dtype) / 1e12, 'measured 2048^2 matmul'
  return float('nan'), 'unknown device'


def jax_speed(preset, batch_size, precision):
  """(real images/s, steps/s, TFLOP per step) of main.py's compiled step on all devices."""
  config = presets.preset(preset, batch_size=batch_size, precision=precision,
                             steps_per_call=FLAGS.steps_per_call)
  mesh = mesh_lib.make_mesh(config.num_devices)
  shape = (max(4 * pipeline.images_per_step(config), 1024), config.resolution,
           config.resolution, config.channels)
  images = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
  dataset = pipeline.shard_dataset(images, mesh)
  order = pipeline.epoch_order(jax.random.PRNGKey(0), 0, len(images))
  orders = jax.device_put(jnp.stack([order, order]), NamedSharding(mesh, P()))

  def compiled(config):
    train_fn = step_lib.make_train_fn(config, mesh)
    state = state_lib.fresh_state(config, NamedSharding(mesh, P()))
    return train_fn, state

  def cost(d_steps):
    """XLA's cost analysis of the call of one step with `d_steps` D updates."""
    train_fn, state = compiled(dataclasses.replace(config, d_steps=d_steps))
    analysis = train_fn.lower(state, (dataset, orders), 1).compile().cost_analysis()
    return (analysis[0] if isinstance(analysis, list) else analysis)['flops']

  # The cost analysis counts a loop's body once whatever its trip count, so with --d_steps > 1
  # (a scan over the extra D updates) the step is costed at 1 and 2 D updates and the
  # difference, one D update, counted d_steps - 1 times.
  flops = cost(1)
  if config.d_steps > 1:
    flops += (config.d_steps - 1) * (cost(2) - flops)
  train_fn, state = compiled(config)
  num_steps = FLAGS.steps_per_call
  for _ in range(2):
    state, _ = train_fn(state, (dataset, orders), num_steps)
  jax.block_until_ready(state)

  def measure():
    """Steps/s of one round of --calls calls."""
    nonlocal state
    start = time.perf_counter()
    for _ in range(FLAGS.calls):
      state, metrics = train_fn(state, (dataset, orders), num_steps)
    jax.block_until_ready((state, metrics))
    return FLAGS.calls * FLAGS.steps_per_call / (time.perf_counter() - start)
  return measure, pipeline.images_per_step(config), flops / 1e12


def torch_meter(preset, batch_size, precision, compile):
  """A function of no arguments returning PyTorch's images/s over --torch_steps steps, or
  None where PyTorch is missing or cannot compile."""
  try:
    import torch_reference  # noqa: PLC0415  (imports torch)
    meter = torch_reference.speed_meter(preset, batch_size, compile=compile,
                                        precision=precision)
    return lambda: meter(FLAGS.torch_steps)
  except (ImportError, RuntimeError) as e:
    print(f'  (PyTorch {"compile" if compile else "eager"}: {str(e).splitlines()[0][:80]})')
    return None


def main(argv):
  del argv
  device = jax.devices()[0]
  header = (f'| preset | batch | precision | img/s | step ms | GFLOP/step | MFU | PyTorch eager '
            f'img/s | torch.compile img/s | vs eager |\n|{"---|" * 10}')
  rows = []
  print(f'{jax.device_count()} x {device.device_kind} ({device.platform}), '
        f'steps_per_call {FLAGS.steps_per_call}\n{header}', flush=True)
  for precision in FLAGS.precisions:
    peak, peak_source = peak_tflops(device, precision)
    if device.platform != 'cpu':  # CPU devices share the cores the matmul was timed on
      peak *= jax.device_count()
    for preset in FLAGS.presets:
      for batch_size in map(int, FLAGS.batch_sizes):
        # JAX's rounds alternate with PyTorch's, and the best of each is reported: on a
        # shared machine whose speed drifts by minutes, neither side gets the quiet spell alone.
        ours_meter, images_per_step, tflop = jax_speed(preset, batch_size, precision)
        meters = {'ours': ours_meter}
        if FLAGS.torch:
          meters['eager'] = torch_meter(preset, batch_size, precision, compile=False)
          if FLAGS.torch_compile:
            meters['compiled'] = torch_meter(preset, batch_size, precision, compile=True)
        best = {name: 0.0 if meter else float('nan') for name, meter in meters.items()}
        for _ in range(FLAGS.rounds):
          for name, meter in meters.items():
            if meter:
              best[name] = max(best[name], meter())
        steps_per_sec = best['ours']
        ours = images_per_step * steps_per_sec
        eager, compiled = best.get('eager', float('nan')), best.get('compiled', float('nan'))
        mfu = steps_per_sec * tflop / peak
        rows.append(f'| {preset} | {batch_size} | {precision} | {ours:,.0f} | '
                    f'{1e3 / steps_per_sec:.1f} | {1e3 * tflop:.1f} | {100 * mfu:.1f}% | '
                    f'{eager:,.0f} | {compiled:,.0f} | {ours / eager:.2f}x |')
        print(rows[-1], flush=True)
    print(f'peak for {precision}: {peak:.2f} TFLOP/s over {jax.device_count()} device(s) '
          f'({peak_source})')
  if FLAGS.write:
    with open(os.path.join(ROOT, 'benchmarks', 'RESULTS.md'), 'a') as f:
      f.write(f'\n## {jax.device_count()} x {device.device_kind}, '
              f'{datetime.date.today().isoformat()}, steps_per_call {FLAGS.steps_per_call}\n\n'
              f'{header}\n' + '\n'.join(rows) + '\n')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  app.run(main)

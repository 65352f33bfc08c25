"""Grouped 3x3 convolutions on CPU: each form of facegan_jax/ops/grouped.py, forward, forward
and backward, and the kernel gradient of the input gradient's squared norm (R1's second
derivative), alone and jitted (not inside a train step's loop; benchmarks/r3gan_speed.py
times the whole step).

  python benchmarks/grouped_forms.py [--shapes=64x16x128x8,64x32x64x4] [--forms=...]

A shape is BATCHxSIDExCHANNELSxGROUPS (in = out channels). Prints milliseconds, the fastest
of --repeats calls, and each form's largest difference from XLA's form.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from facegan_jax.ops import grouped  # noqa: E402


def fastest_ms(fn, *args, repeats):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * min(times)


def measure(form, x, kernel, weights, groups, repeats):
  conv = grouped.FORMS[form]

  def loss(x, kernel):
    return jnp.sum(conv(x, kernel, groups) * weights)

  def penalty(kernel, x):
    return jnp.sum(jnp.square(jax.grad(loss)(x, kernel)))

  forward = jax.jit(lambda x, kernel: conv(x, kernel, groups))
  backward = jax.jit(jax.grad(loss, argnums=(0, 1)))
  second = jax.jit(jax.grad(penalty))
  return ((fastest_ms(forward, x, kernel, repeats=repeats),
           fastest_ms(backward, x, kernel, repeats=repeats),
           fastest_ms(second, kernel, x, repeats=repeats)),
          (forward(x, kernel), second(kernel, x)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--shapes', default='64x16x128x8,64x32x64x4,64x16x256x16')
  parser.add_argument('--forms', default=','.join(grouped.FORMS))
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  print(f'{"shape":<16} {"form":<11} {"fwd ms":>8} {"fwd+bwd":>8} {"R1 2nd":>8} {"max diff":>9}')
  for shape in args.shapes.split(','):
    batch, side, channels, groups = (int(v) for v in shape.split('x'))
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, side, side, channels))
    kernel = 0.1 * jax.random.normal(keys[1], (3, 3, channels // groups, channels))
    weights = jax.random.normal(keys[2], (batch, side, side, channels))
    reference = None
    for form in ['xla'] + [f for f in args.forms.split(',') if f != 'xla']:
      times, outputs = measure(form, x, kernel, weights, groups, args.repeats)
      reference = reference or outputs
      diff = max(float(jnp.abs(a - b).max() / jnp.abs(b).max())
                 for a, b in zip(outputs, reference))
      print(f'{shape:<16} {form:<11} {times[0]:>8.1f} {times[1]:>8.1f} {times[2]:>8.1f} '
            f'{diff:>9.1e}', flush=True)


if __name__ == '__main__':
  main()

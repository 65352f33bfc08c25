"""The best rate of a dense matmul on this machine, now: the CPU peak that MFU divides by."""

import time

import jax
import jax.numpy as jnp


def best_flops(dtype=jnp.float32, size=2048, repeats=40):
  """FLOP/s of the fastest of `repeats` size x size products. The best of many: on a shared
  machine a few disturbed products would lower the peak and so inflate MFU."""
  a = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda a: a @ a)
  matmul(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best

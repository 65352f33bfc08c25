"""The CPU runtime settings main.py applies before JAX starts."""

from conftest import run_python


def test_configure_sets_flags_keeps_the_users_and_refuses_after_jax():
  out = run_python('''
import os
os.environ['XLA_FLAGS'] = '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_enable_fast_math=false'
from facegan_jax import runtime
runtime.configure()
print(os.environ['XLA_FLAGS'])
os.environ['XLA_FLAGS'] = ''
runtime.configure()
print(os.environ['XLA_FLAGS'])
import jax
print(float(jax.numpy.ones(3).sum()))  # JAX starts with the flags
try:
  runtime.configure()
except RuntimeError as e:
  print('refused:', e)
''')
  user, default, total, refused = out.splitlines()
  assert user == '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_enable_fast_math=false'
  assert default == '--xla_cpu_experimental_ynn_fusion_type=individual_dot'
  assert total == '3.0'
  assert refused.startswith('refused: facegan_jax.runtime.configure() must run before JAX')


def test_freed_memory_is_reused_without_page_faults():
  # Without the allocator settings every call faults its 64 MB output in again (16,385 faults).
  # With them the heap grows to its high-water mark over the first calls (how many depends on
  # when XLA's threads free the previous output: more on a loaded machine), then every call
  # reuses it: median 0 over the later calls.
  out = run_python('''
import resource
from facegan_jax import runtime
runtime.configure()
import jax, jax.numpy as jnp
x = jnp.ones((256, 32, 32, 64))
f = jax.jit(lambda x: x * 2 + 1)
faults = []
for _ in range(60):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
later = faults[30:]
print(sorted(later)[len(later) // 2], faults)
''')
  median, faults = out.split(' ', 1)
  assert int(median) < 1000, f'median {median} page faults per call: {faults}'

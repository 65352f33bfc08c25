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
  # Without the allocator settings each call faults its 64 MB output in again (16k faults).
  out = run_python('''
import resource
from facegan_jax import runtime
runtime.configure()
import jax, jax.numpy as jnp
x = jnp.ones((256, 32, 32, 64))
f = jax.jit(lambda x: x * 2 + 1)
for _ in range(10):  # the heap settles after a few allocations
  f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
  f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
''')
  assert float(out) < 1000, f'{out} page faults per call'

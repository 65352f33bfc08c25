"""Shared test helpers: tiny configs and multi-device runs in a subprocess."""

import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# One persistent XLA compilation cache for the test processes and the runs they start: most
# tests compile the same tiny models, and a cached executable is the same code (a tiny main.py
# run takes ~5 s instead of ~18 s). Set before any test imports JAX.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'facegan_jax_tests_xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')


def run_python(code, devices=1, timeout=240):
  """Runs `code` in a fresh Python with `devices` CPU devices; returns its stdout.

  JAX fixes the device count when it starts, so multi-device tests need their own process.
  Keep devices <= 2: more fake devices than cores can deadlock XLA's CPU collectives.
  """
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
  if result.returncode:
    pytest.fail(f'subprocess failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
  return result.stdout

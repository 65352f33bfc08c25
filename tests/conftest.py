"""Shared test helpers: tiny configs and multi-device runs in a subprocess."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


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

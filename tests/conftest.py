"""Shared test helpers: tiny configs and multi-device runs in a subprocess."""

import json
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
# LLVM's optimisations of XLA's CPU code take half of a cold compile. Tests check what is
# computed, not how fast, and without them the same HLO computes the same numbers (a tiny run's
# losses are unchanged); the suite's cold compiles take half the time.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = f'{os.environ.get("XLA_FLAGS", "")} {TEST_XLA_FLAGS}'.strip()


def xla_flags(devices):
  """XLA_FLAGS for a test subprocess with `devices` CPU devices."""
  return f'{TEST_XLA_FLAGS} --xla_force_host_platform_device_count={devices}'


def run_python(code, devices=1, timeout=240, **env):
  """Runs `code` in a fresh Python with `devices` CPU devices; returns its stdout.

  JAX fixes the device count when it starts, so multi-device tests need their own process.
  Keep devices <= 2: more fake devices than cores can deadlock XLA's CPU collectives. `env`
  overrides environment variables, e.g. XLA_FLAGS.
  """
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': xla_flags(devices), **env}
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
  if result.returncode:
    pytest.fail(f'subprocess failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
  return result.stdout


# A tiny dcgan run through main.py: compiles in seconds, steps in milliseconds.
TINY = ['--dataset=synthetic_faces/small', '--resolution=16', '--conv_dim=8', '--z_dim=8',
        '--batch_size=16', '--log_every=5', '--sample_every=10', '--checkpoint_every=10',
        '--ema_decay=0.9']


def main_env(devices=1):
  return dict(os.environ, JAX_PLATFORMS='cpu',
              XLA_FLAGS=xla_flags(devices))


def main_py(*args, devices=1, **env):
  """Runs main.py with `args` to completion; returns the CompletedProcess (text output).

  `env` overrides environment variables, e.g. XLA_FLAGS.
  """
  return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *args],
                        env={**main_env(devices), **env}, capture_output=True, text=True,
                        timeout=300, cwd=ROOT)


def read_checkpoint(step_dir):
  """The state saved in checkpoint directory `step_dir`, as a tree of arrays on this process's
  first device, whatever devices saved it (for comparing checkpoints)."""
  import jax  # noqa: PLC0415  (after the XLA flags above)
  import orbax.checkpoint as ocp  # noqa: PLC0415
  path = os.path.join(step_dir, 'state')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, target)


def metrics(workdir):
  """The rows of workdir/metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A --data_dir shared by a module's runs (synthetic_faces/small renders in ~2 s)."""
  return str(tmp_path_factory.mktemp('data'))

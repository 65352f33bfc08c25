"""Process settings that make XLA on CPU fast; call `configure()` before JAX is imported.

Why each one (the measurements: benchmarks/RESULTS.md, "CPU runtime settings"):

- glibc's malloc hands large freed blocks back to the kernel (XLA's worker threads get
  mmap'ed buffers above 32 MB or outside the main arena), so every step page-faults its
  activations back in, and filling fresh pages costs far more than reusing resident ones.
  One arena, no mmap'ed chunks and no trimming keep the memory in the process.
- XLA's convolutions through YNNPACK fusions (the default in jaxlib 0.10) run the DCGAN layers
  slower than XLA's own convolution emitter; dots keep the YNNPACK path.
- JAX's persistent compilation cache, unless JAX_COMPILATION_CACHE_DIR names another folder:
  a resumed run, and --mode=sample, eval, explore or project, reuse the programs an earlier
  run compiled (the quickstart resumed for 100 steps: 16.5 s instead of 31-33 s), in
  XDG_CACHE_HOME/facegan_jax/xla, at most 2 GiB (least recently used entries go first); a
  JAX_COMPILATION_CACHE_DIR of the user's is used as it is, without a limit of ours.

Neither changes results beyond float reassociation, and neither affects GPU or TPU backends.
Also the console filter main.py installs (`ours_or_warning`).
"""

import ctypes
import logging
import os
import sys

from facegan_jax.run import files

# XLA flags set unless the user's XLA_FLAGS already name them.
XLA_CPU_FLAGS = {'xla_cpu_experimental_ynn_fusion_type': 'individual_dot'}

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def configure():
  """Keeps freed memory in the process, sets XLA_CPU_FLAGS and the compilation cache.
  Idempotent."""
  if 'jax' in sys.modules:
    raise RuntimeError('facegan_jax.run.runtime.configure() must run before JAX is imported')
  flags = os.environ.get('XLA_FLAGS', '')
  extra = [f'--{name}={value}' for name, value in XLA_CPU_FLAGS.items()
           if f'--{name}=' not in flags]
  os.environ['XLA_FLAGS'] = ' '.join([flags] + extra).strip()
  if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
    folder = files.cache_dir('xla')
    try:
      os.makedirs(folder, exist_ok=True)
    except OSError:  # no writable cache folder: each run compiles afresh, as without one
      pass
    else:
      os.environ['JAX_COMPILATION_CACHE_DIR'] = folder
      # The size limit only in our own folder: JAX's limit needs an access-time file beside
      # every entry, and in a folder where a process without the limit wrote one it stores
      # nothing more (each write fails on the missing file).
      os.environ.setdefault('JAX_COMPILATION_CACHE_MAX_SIZE', str(2 << 30))
  _keep_freed_memory()


def initialize_distributed(config):
  """Joins a multi-process run (call before any JAX computation).

  With --coordinator_address, the given address, --num_processes and --process_id; without it,
  JAX's own detection where one applies (SLURM with more than one task, Open MPI, Cloud TPU
  pod slices); otherwise a single process, as before. CPU processes talk through gloo.
  """
  import jax  # noqa: PLC0415  (after configure())
  if config.coordinator_address:
    jax.distributed.initialize(config.coordinator_address, config.num_processes,
                               config.process_id)
  elif _cluster_detected():
    jax.distributed.initialize()


def _cluster_detected():
  env = os.environ
  return (int(env.get('SLURM_NTASKS', '1')) > 1 or int(env.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
          or ',' in env.get('TPU_WORKER_HOSTNAMES', ''))


def writes_files():
  """Whether this process writes the run's files (logs, metrics, pictures): process 0."""
  import jax  # noqa: PLC0415
  return jax.process_index() == 0


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


# Library warnings that say nothing new: orbax's for every manager opened read-only, as
# --mode=sample and eval open theirs; TFDS's for a dataset folder not yet prepared, twice
# before our own line says that it is being prepared.
_EXPECTED_WARNINGS = ('Given directory is read only', 'Variant folder')


def ours_or_warning(record, package_dir=_PACKAGE_DIR):
  """Console filter: this project's log lines, and every library's warnings and errors
  (orbax, TFDS and JAX log a lot at INFO). Ours by the file that logged: a library installed
  in a virtual environment inside the clone is not ours."""
  path = os.path.abspath(record.pathname)
  if path.startswith(package_dir) or path == os.path.join(
      os.path.dirname(package_dir.rstrip(os.sep)), 'main.py'):
    return True
  return (record.levelno >= logging.WARNING
          and not str(record.msg).startswith(_EXPECTED_WARNINGS))


def _keep_freed_memory():
  if not sys.platform.startswith('linux'):
    return
  try:
    libc = ctypes.CDLL('libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
    return
  mallopt(_M_ARENA_MAX, 1)
  mallopt(_M_MMAP_MAX, 0)
  mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)

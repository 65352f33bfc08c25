"""The CPU runtime settings main.py applies before JAX starts."""

import json
import os
import logging

from conftest import run_python

from facegan_jax.run import runtime


def test_configure_sets_flags_keeps_the_users_and_refuses_after_jax():
  out = run_python('''
import os
os.environ['XLA_FLAGS'] = '--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_enable_fast_math=false'
from facegan_jax.run import runtime
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
  assert refused.startswith('refused: facegan_jax.run.runtime.configure() must run before JAX')


# The page faults of each of 50 calls whose 42 MB output is dropped before the next call.
FAULTS = '''
import json, resource
from facegan_jax.run import runtime
if {configure}:
  runtime.configure()
import jax, jax.numpy as jnp
x = jnp.ones((160, 32, 32, 64))
f = jax.jit(lambda x: x * 2 + 1)
faults = []
for _ in range(50):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
'''


def test_freed_memory_is_reused_without_page_faults():
  """Of the later calls (25-50), every one faults its output in again without the allocator
  settings, and few do with them.

  Without the settings glibc hands each freed 42 MB output (above its 32 MB ceiling for
  memory kept in the heap) back to the kernel, so every call faults it in again (10,241
  faults). With them freed memory stays in the process and a page
  faults at most once: a call faults only when the heap grows past its high-water mark, which
  it does over the first calls, as often as outputs are alive at once; on a loaded machine
  XLA's threads free the previous output later, so the heap grows more often and later (seen:
  in up to 3 of the later calls, 0 on an idle machine). So the test counts the calls that
  fault in at least half an output, as measured by the same process without the settings,
  and allows a third of them: no absolute count and no time decides it.
  """
  def later_faults(configure):
    return json.loads(run_python(FAULTS.format(configure=configure)).splitlines()[-1])[25:]

  configured, unconfigured = later_faults(configure=True), later_faults(configure=False)
  output_pages = sorted(unconfigured)[len(unconfigured) // 2]
  refaulted = [n for n in configured if n >= output_pages / 2]
  assert output_pages > 0 and all(n >= output_pages / 2 for n in unconfigured), unconfigured
  assert len(refaulted) <= len(configured) // 3, (configured, unconfigured)


def test_console_shows_our_info_lines_and_every_librarys_warnings():
  """ours_or_warning keeps a log record from this project's package or main.py at any level,
  and other code's at WARNING and above; a library in a virtual environment inside the clone
  (whose name is the package's) is not ours."""
  clone = '/home/u/facegan_jax/'
  package_dir = clone + 'facegan_jax/'

  def shown(path, level=logging.INFO, message='a line'):
    record = logging.LogRecord('absl', level, path, 45, message, None, None)
    return runtime.ours_or_warning(record, package_dir=package_dir)

  library = clone + '.venv/lib/python3.11/site-packages/orbax/checkpoint/checkpoint_manager.py'
  assert not shown(library)
  assert shown(library, logging.WARNING) and shown(library, logging.ERROR)
  # What our read-only checkpoint managers make orbax say, every time: not news to the user.
  assert not shown(library, logging.WARNING, 'Given directory is read only=/w/checkpoints')
  # TFDS's on a dataset not yet prepared, before our own "Rendering ..." line.
  tfds_file = clone + '.venv/lib/python3.11/site-packages/tensorflow_datasets/core/file_utils.py'
  assert not shown(tfds_file, logging.WARNING, 'Variant folder /d/1.0.0 has no dataset_info.json')
  assert shown(package_dir + 'train.py') and shown(package_dir + 'checkpoint/manager.py')
  assert shown(clone + 'main.py')
  for other in (clone + '.venv/lib/python3.11/site-packages/absl/main.py',
                clone + 'facegan_jax_old/train.py', clone + 'benchmarks/mfu.py',
                '/usr/lib/python3.11/logging/__init__.py'):
    assert not shown(other), other
  # The real package directory is the default.
  assert runtime.ours_or_warning(logging.LogRecord('absl', logging.INFO, runtime.__file__, 1,
                                                   'a line', None, None))
  assert not runtime.ours_or_warning(logging.LogRecord('absl', logging.INFO, logging.__file__,
                                                       1, 'a line', None, None))


def test_configure_keeps_compiled_programs_in_the_cache_folder_unless_told(tmp_path):
  """JAX's compilation cache in XDG_CACHE_HOME/facegan_jax/xla, which a program compiled once
  is then read from, at most 2 GiB; a JAX_COMPILATION_CACHE_DIR given is kept as it is;
  without a writable folder, none (and no warning)."""
  code = '''
import os, warnings
warnings.simplefilter('error')
if os.environ['JAX_COMPILATION_CACHE_DIR'] == 'unset':  # the suite's own cache set aside
  del os.environ['JAX_COMPILATION_CACHE_DIR']
from facegan_jax.run import runtime
runtime.configure()
import jax
print(os.environ.get('JAX_COMPILATION_CACHE_DIR'), jax.config.jax_compilation_cache_max_size)
print(float(jax.jit(lambda x: jax.numpy.sin(x).sum())(jax.numpy.ones(1000))))
'''
  env = dict(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  default = run_python(code, JAX_COMPILATION_CACHE_DIR='unset', XDG_CACHE_HOME=str(tmp_path), **env)
  folder = str(tmp_path / 'facegan_jax' / 'xla')
  assert default.splitlines()[0] == f'{folder} {2 << 30}'
  assert any(name.startswith('jit__lambda') for name in os.listdir(folder))
  # A folder of the user's, where a JAX program without a size limit wrote first: it is used
  # as it is, and the run's programs are written to it too.
  mine = str(tmp_path / 'mine')
  run_python('import jax; jax.jit(lambda x: x * 3)(1.0)', JAX_COMPILATION_CACHE_DIR=mine, **env)
  given = run_python(code, JAX_COMPILATION_CACHE_DIR=mine, **env)
  assert given.splitlines()[0] == f'{mine} -1'
  assert sum(name.startswith('jit__lambda') for name in os.listdir(mine)) == 2
  unwritable = run_python(code, JAX_COMPILATION_CACHE_DIR='unset', XDG_CACHE_HOME='/dev/null/x', **env)
  assert unwritable.splitlines()[0].split()[0] == 'None'

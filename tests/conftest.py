"""Shared test helpers: tiny configs, multi-device runs in a subprocess, and main.py runs in
the background that a test waits on by their log lines."""

import contextlib
import copy
import dataclasses
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from facegan_jax.run.runtime import XLA_CPU_FLAGS  # noqa: E402  (imports no JAX)
# pytest loads this file as `conftest`; the tests import it as `tests.conftest`. One module,
# so that both see the running test's deadline.
sys.modules.setdefault('tests.conftest', sys.modules[__name__])

# Python's bytecode cached for the suite's ~70 processes even where PYTHONDONTWRITEBYTECODE is
# set (the README installs with --no-compile, which halves the install): each module is then
# compiled by the first process that imports it, not by every one.
sys.dont_write_bytecode = False
os.environ.pop('PYTHONDONTWRITEBYTECODE', None)

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
EXACT_XLA_FLAGS = '--xla_backend_optimization_level=0'
# XLA's older elemental emitters for CPU fusions compile in half the time of the MLIR fusion
# emitters (tests/test_step.py's R1 test: 8.8 s of compiles against 17.5 s) and compute the
# same values to float rounding (their exp and log round differently). Without LLVM's
# optimisations, though, a step inside a while loop and the same step outside one then differ
# in their last bits: the tests that compare two such programs bit for bit run in a process
# of their own under EXACT_XLA_FLAGS.
# And main.py's own CPU flags (runtime.configure), so that a program this process compiles and
# the same program a main.py run of the suite compiles are one entry of the compilation cache
# (the flags are part of its key).
TEST_XLA_FLAGS = (f'{EXACT_XLA_FLAGS} --xla_cpu_use_fusion_emitters=false '
                  '--xla_cpu_enable_concurrency_optimized_scheduler=false ' +
                  ' '.join(f'--{name}={value}' for name, value in XLA_CPU_FLAGS.items()))
# The test processes themselves have two CPU devices, as the multi-device runs they start:
# one- and two-device computations are compared in process, without a subprocess's ~3 s of
# start-up. Tests that need one device make a one-device mesh.
# A test's subprocess that imports this module keeps the flags it was given.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (f'{os.environ.get("XLA_FLAGS", "")} {TEST_XLA_FLAGS} '
                             '--xla_force_host_platform_device_count=2').strip()


# The modules whose tests run main.py or train for seconds (most of the suite's time). They
# are collected first and `-n 2` steals work (below), so that the two workers end the session
# on quick tests, not one of them idle while the other runs a long one.
SLOW_MODULES = ('test_main.py', 'test_resume.py', 'test_multihost.py', 'test_experiments.py',
                'test_face_attributes.py', 'test_classifier.py', 'test_ops.py',
                'test_step.py', 'test_train.py', 'test_families.py', 'test_rpgan.py')


@pytest.fixture(autouse=True)
def _auto_convolution_forms():
  """Each test starts with the convolutions in their 'auto' forms: a test whose state set
  --conv_impl (ops.set_forms) leaves no other test on them."""
  yield
  if 'facegan_jax.ops' in sys.modules:
    sys.modules['facegan_jax.ops'].set_forms('auto')


def param_count(module):
  """Number of trainable parameters of an NNX module."""
  import jax  # noqa: PLC0415  (this file imports no JAX: the XLA flags above come first)
  from flax import nnx  # noqa: PLC0415
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: (SLOW_MODULES.index(item.path.name)
                               if item.path.name in SLOW_MODULES else len(SLOW_MODULES)))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
  """xdist's default for -n, `load`, hands out a quarter of the tests up front, round robin,
  long ones too; `worksteal` lets an idle worker take tests still queued for the other."""
  if config.getvalue('dist') == 'load':
    from xdist.scheduler import WorkStealingScheduling  # noqa: PLC0415  (with xdist only)
    return WorkStealingScheduling(config, log)
  return None


def xla_flags(devices, flags=TEST_XLA_FLAGS):
  """XLA_FLAGS for a test subprocess with `devices` CPU devices."""
  return f'{flags} --xla_force_host_platform_device_count={devices}'


def run_python(code, devices=1, timeout=240, **env):
  """Runs `code` in a fresh Python with `devices` CPU devices; returns its stdout.

  JAX fixes the device count when it starts, so multi-device tests need their own process.
  Keep devices <= 2: more fake devices than cores can deadlock XLA's CPU collectives. `env`
  overrides environment variables, e.g. XLA_FLAGS.
  """
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': xla_flags(devices), **env}
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=_timeout(timeout), cwd=ROOT,
                          stdin=subprocess.DEVNULL)
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


def main_config(*args):
  """(Config, --workdir) that main.py makes of the command-line `args`, parsed by main.py's own
  flags in this process (a copy of them: nothing is left parsed), for a test that runs what
  main.py would call (train.train_and_evaluate, explore.explore, ...) in process. Pass
  --num_devices: this process has 2 devices where main_py's runs have 1 unless told."""
  import main  # noqa: PLC0415  (defines main.py's flags; imports no JAX)
  from facegan_jax import config as config_lib  # noqa: PLC0415
  flag_values = copy.deepcopy(main.FLAGS)
  flag_values(['main.py', *args])
  return config_lib.from_flags(flag_values), flag_values.workdir


def train_in_a_process(runs, xla_flags_value, main_py_flags=False):
  """Trains each (Config, workdir) of `runs` in turn, as main.py would, in one fresh Python
  whose XLA_FLAGS are `xla_flags_value` (and main.py's own CPU flags too if
  `main_py_flags`); returns its stdout: each run's INFO lines after a line `RUN workdir`."""
  configure = 'from facegan_jax.run import runtime\nruntime.configure()' if main_py_flags else ''
  return run_python(f'''
{configure}
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')
from facegan_jax import config as config_lib, train
for fields, workdir in {[(dataclasses.asdict(config), workdir) for config, workdir in runs]!r}:
  print('RUN', workdir, flush=True)
  train.train_and_evaluate(config_lib.Config(**fields), workdir)
''', XLA_FLAGS=xla_flags_value)


class Deadline:
  """One deadline for a whole test: each wait in it gets the time that is left."""

  def __init__(self, seconds):
    self.seconds, self.end = seconds, time.monotonic() + seconds

  def left(self):
    left = self.end - time.monotonic()
    if left <= 0:
      raise TimeoutError(f"the test's deadline of {self.seconds} s has passed")
    return left


# Each test's one deadline: the subprocesses it runs and its waits share it.
TEST_SECONDS = 300
_test_deadline = None


@pytest.fixture(autouse=True)
def deadline():
  """The test's Deadline, TEST_SECONDS from its start; main_py and run_python use it."""
  global _test_deadline
  _test_deadline = Deadline(TEST_SECONDS)
  yield _test_deadline
  _test_deadline = None


def _timeout(seconds):
  """`seconds`, or less when less is left of the running test's deadline."""
  return min(seconds, _test_deadline.left()) if _test_deadline else seconds


def main_py(*args, devices=1, **env):
  """Runs main.py with `args` to completion; returns the CompletedProcess (text output).

  `env` overrides environment variables, e.g. XLA_FLAGS.
  """
  return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *args],
                        env={**main_env(devices), **env}, capture_output=True, text=True,
                        timeout=_timeout(TEST_SECONDS), cwd=ROOT, stdin=subprocess.DEVNULL)


class Run:
  """A main.py process started by `started_main`, its stdout and stderr in one log file."""

  def __init__(self, process, log_path):
    self.process, self.log_path = process, log_path
    self._read = 0  # bytes of the log read so far (complete lines)

  def output(self):
    """Everything the run has written so far."""
    with open(self.log_path, errors='replace') as f:
      return f.read()

  def _new_lines(self):
    """The lines completed in the log since the last call."""
    with open(self.log_path, 'rb') as f:
      f.seek(self._read)
      data = f.read()
    end = data.rfind(b'\n') + 1  # a partial last line is read again next time
    self._read += end
    return data[:end].decode(errors='replace').splitlines()

  def wait_for_line(self, pattern, deadline, when=lambda match: True):
    """The first match of regex `pattern` in a line of the log (a line already read by an
    earlier call does not count) for which `when(match)` holds; None if the run exits without
    one. The log only grows, so polling it cannot miss the line."""
    pattern = re.compile(pattern)
    while True:
      exited = self.process.poll() is not None  # before reading: its last lines are in
      for line in self._new_lines():
        match = pattern.search(line)
        if match and when(match):
          return match
      if exited:
        return None
      deadline.left()
      time.sleep(0.005)

  def wait(self, deadline):
    """The exit status, once the run has ended."""
    try:
      return self.process.wait(timeout=deadline.left())
    except subprocess.TimeoutExpired:
      raise TimeoutError(f'main.py still running at the deadline:\n{self.tail()}') from None

  def send_signal(self, signum):
    self.process.send_signal(signum)

  def kill(self):
    """SIGKILL (nothing if it has ended)."""
    self.process.kill()
    self.process.wait()

  def tail(self, chars=3000):
    return self.output()[-chars:]


@contextlib.contextmanager
def started_main(*args, log, devices=1, stdout=None, **env):
  """Starts main.py with `args` in the background and yields its Run; kills it on leaving.

  Its stdout and stderr go to the file `log` (a pipe nobody reads would fill and block a
  chatty run); `stdout`, a file descriptor, takes stdout instead. `env` overrides environment
  variables.
  """
  with open(log, 'wb') as f:
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *args],
                               env={**main_env(devices), **env}, cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=f if stdout is None else stdout, stderr=f)
  try:
    yield Run(process, log)
  finally:
    if process.poll() is None:
      process.kill()
    process.wait()


def wait_for_exits(runs, deadline):
  """Waits until every Run has ended, or one has failed (the others may then wait for it
  forever); returns their exit statuses, None for those still running."""
  while True:
    codes = [run.process.poll() for run in runs]
    if None not in codes or any(codes):
      return codes
    deadline.left()
    time.sleep(0.01)


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


def _session_dir(tmp_path_factory):
  """A directory of this test session that its xdist workers share."""
  basetemp = tmp_path_factory.getbasetemp()
  return basetemp.parent if os.environ.get('PYTEST_XDIST_WORKER') else basetemp


@contextlib.contextmanager
def _session_lock(path):
  """Held by one worker of the session at a time."""
  with open(path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    yield


@pytest.fixture(scope='session', autouse=True)
def _session_cache_home(tmp_path_factory):
  """XDG_CACHE_HOME for the whole session, its processes and the runs they start: a directory
  of the session (the xdist workers share it), so that nothing is read from or written to the
  user's ~/.cache (the feature networks netcache trains, the FID real features). A test that
  evaluates on synthetic_faces or a labelled folder names attribute_net_cache or
  class_net_cache instead, or it trains that network itself, slowly."""
  path = _session_dir(tmp_path_factory) / 'xdg_cache'
  path.mkdir(exist_ok=True)
  previous = os.environ.get('XDG_CACHE_HOME')
  os.environ['XDG_CACHE_HOME'] = str(path)
  yield str(path)
  if previous is None:
    del os.environ['XDG_CACHE_HOME']
  else:
    os.environ['XDG_CACHE_HOME'] = previous


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """A --data_dir shared by the session's runs, synthetic_faces/small rendered into it once
  (~4 s; then every process only reads it, and writes its caches whole or not at all)."""
  shared = _session_dir(tmp_path_factory)
  path = shared / 'data'
  with _session_lock(shared / 'data.lock'):
    if not (path / 'rendered').exists():
      run_python(f'''
from facegan_jax.config import Config
from facegan_jax.data import sources
sources.load_images(Config(dataset='synthetic_faces/small', data_dir={str(path)!r},
                           resolution=16))
''')
      (path / 'rendered').touch()
  return str(path)


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory, data_dir):
  """(workdir, console output as {'stdout', 'stderr'}) of a TINY main.py run of 10 steps on
  data_dir with checkpoints at 5 and 10, trained once per test session (the xdist workers
  share it). Tests go on from a copy (copy_run), never from it."""
  shared = _session_dir(tmp_path_factory)
  workdir, output = shared / 'tiny_run', shared / 'tiny_run.json'
  with _session_lock(shared / 'tiny_run.lock'):
    if not output.exists():
      shutil.rmtree(workdir, ignore_errors=True)  # what a failed try left
      result = main_py(*TINY, f'--data_dir={data_dir}', f'--workdir={workdir}',
                       '--num_steps=10', '--checkpoint_every=5')
      if result.returncode:
        pytest.fail(f'the session\'s tiny run failed:\n{result.stderr[-3000:]}')
      (shared / 'tiny_run.json.tmp').write_text(json.dumps(dict(stdout=result.stdout,
                                                                stderr=result.stderr)))
      (shared / 'tiny_run.json.tmp').rename(output)
  return str(workdir), json.loads(output.read_text())


def copy_run(workdir, to):
  """Copies the workdir of an ended run to `to`, its flags.txt naming `to` as the run's own
  would (a --flagfile rerun of the copy resumes the copy); returns `to`."""
  shutil.copytree(workdir, to)
  path = os.path.join(to, 'flags.txt')
  with open(path) as f:
    lines = f.read().splitlines(keepends=True)
  with open(path, 'w') as f:
    f.writelines(f'--workdir={os.path.abspath(to)}\n' if line.startswith('--workdir=') else line
                 for line in lines)
  return to


@pytest.fixture(scope='session')
def attribute_net_cache(tmp_path_factory, data_dir):
  """An XDG_CACHE_HOME holding synthetic_faces/small's attribute network (RGB), trained once
  per test session (the xdist workers share it) with XLA's optimisations (the suite turns
  them off, which makes this training ~5x slower); its cache key depends on neither
  --data_dir nor --resolution. The record load_or_train returned when it trained the network
  is in its training.json.
  """
  return _trained_once(tmp_path_factory, 'attribute_net', f'''
from facegan_jax.config import Config
from facegan_jax.evaluation import face_attributes
_, record = face_attributes.load_or_train(Config(dataset='synthetic_faces/small',
                                                 data_dir={data_dir!r}))
''')


def _trained_once(tmp_path_factory, name, code):
  """An XDG_CACHE_HOME of this session holding the network that `code` trains (setting
  `record`), trained by the first worker that asks (the others wait) in a subprocess with XLA's
  optimisations; `record` is written to its training.json."""
  shared = _session_dir(tmp_path_factory)
  cache = shared / f'{name}_xdg_cache'
  with _session_lock(shared / f'{name}.lock'):
    if not (cache / 'training.json').exists():
      out = run_python(code + '\nimport json\nprint(json.dumps(record))\n', XLA_FLAGS='',
                       XDG_CACHE_HOME=str(cache))
      (cache / 'training.json.tmp').write_text(out.strip().splitlines()[-1])
      (cache / 'training.json.tmp').rename(cache / 'training.json')
  return str(cache)


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """scikit-learn's 1,797 real digits as a 28x28 class-folder tree (benchmarks/sklearn_digits),
  written once per test session."""
  shared = _session_dir(tmp_path_factory)
  with _session_lock(shared / 'digits.lock'):
    from benchmarks import sklearn_digits  # noqa: PLC0415  (imports scikit-learn)
    return sklearn_digits.write_tree(str(shared / 'digits'))


# The class network's training in the tests: 4 epochs of the digits instead of up to 30 (its
# held-out accuracy 0.97 instead of 0.99, still far over tests/test_classifier.py's 0.9; a
# fifth of the training time). Its settings are in its cache key: a process that loads it
# sets them too (test_classifier.py's short_class_net_training).
CLASS_NET_TRAIN = dict(epochs_at_most=4)


@pytest.fixture(scope='session')
def class_net_cache(tmp_path_factory, data_dir, digits_dir):
  """An XDG_CACHE_HOME holding the digits' class network (grayscale), trained once per test
  session (with CLASS_NET_TRAIN) with XLA's optimisations (as attribute_net_cache); the record
  load_or_train returned when it trained is in its training.json."""
  return _trained_once(tmp_path_factory, 'class_net', f'''
from facegan_jax.config import Config
from facegan_jax.data import sources
from facegan_jax.evaluation import classifier
classifier.TRAIN.update({CLASS_NET_TRAIN!r})
config = Config(dataset='folder:{digits_dir}', data_dir={data_dir!r},
                resolution=28, channels=1)
_, record = classifier.load_or_train(config, sources.load_images(config),
                                     *sources.load_labels(config))
''')


# The base names of this project's modules: the files absl names in the console lines of ours.
OUR_FILES = frozenset(os.path.basename(path) for path in
                      glob.glob(os.path.join(ROOT, 'facegan_jax', '**', '*.py'), recursive=True)
                      + [os.path.join(ROOT, 'main.py')])
# absl's prefix of an INFO line: `I1201 20:00:00.123456 140351089916800 train.py:45] ...`.
INFO_LINE = re.compile(r'^I\d{4} (\d\d):(\d\d):(\d\d\.\d+) +\d+ ([^:\s]+):\d+\] (.*)$')


def info_lines(output):
  """(file name, seconds since midnight, message) of each INFO line of a run's output."""
  return [(m[4], int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]), m[5])
          for m in map(INFO_LINE.match, output.splitlines()) if m]


def assert_only_our_info_lines(output):
  """main.py's console shows INFO lines of this project's files only (libraries' warnings
  and errors pass too; facegan_jax/run/runtime.py's ours_or_warning). Returns those files."""
  files = {name for name, _, _ in info_lines(output)}
  assert files <= OUR_FILES, sorted(files - OUR_FILES)
  return files


def tensorboard_events(workdir):
  """WORKDIR/tensorboard read as TensorBoard reads it (earlier files' events after a resumed
  run's restored step purged): {'scalars': {tag: [(step, value)]}, 'images': {tag: [step]},
  'text': {tag: [step]}, 'hparams': the hparams plugin's tags}."""
  from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415
  events = event_accumulator.EventAccumulator(
      os.path.join(workdir, 'tensorboard'),
      size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0,
                     event_accumulator.TENSORS: 0})
  events.Reload()
  tags = events.Tags()
  return dict(
      scalars={tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags['scalars']},
      images={tag: [e.step for e in events.Images(tag)] for tag in tags['images']},
      text={tag: [e.step for e in events.Tensors(tag)]
            for tag in events.PluginTagToContent('text')},
      hparams=set(events.PluginTagToContent('hparams')))

"""How well runs survive interruption: random SIGKILLs, SIGTERM latency, checkpoint save time.

  python benchmarks/resilience.py [--kill_points=10] [--preset=dcgan64]

1. Kill points (a tiny dcgan, 1 device): one uninterrupted run, then --kill_points runs killed
   with SIGKILL at a random moment after a random checkpoint and rerun to the end. Prints how
   many finished bit-identical to the uninterrupted run (every array of the final checkpoint,
   and every metrics.jsonl row but its timing keys). With --tear (default), each kill also
   leaves metrics.jsonl as a kill inside its next append would: that line (the uninterrupted
   run's) cut at a random byte. An append takes microseconds, so the tear is written after the
   kill rather than timed inside one.
2. --preset on synthetic_faces: main.py's logged blocking time of each checkpoint save, and the
   time from SIGTERM to the process's exit (it finishes the step, saves, exits 0).
"""

import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facegan_jax import presets  # noqa: E402

flags.DEFINE_integer('kill_points', 10, 'random SIGKILL points to try (0 = skip)')
flags.DEFINE_string('preset', 'dcgan64', 'preset for the save and SIGTERM timings ("" = skip)')
flags.DEFINE_bool('tear', True, "also tear metrics.jsonl's last line at each kill point")
flags.DEFINE_integer('seed', None, 'seed of the kill points (default: random, printed)')
FLAGS = flags.FLAGS

TINY = ['--dataset=synthetic_faces/small', '--resolution=16', '--conv_dim=8', '--z_dim=8',
        '--batch_size=16', '--log_every=5', '--sample_every=1000', '--checkpoint_every=5',
        '--ema_decay=0.9', '--num_steps=60']


# The runs' environment, as this process started: importing tests.conftest (final_arrays)
# changes os.environ's XLA_FLAGS for the test suite, which would give later runs other flags
# (and other float results) than the first.
ENV = dict(os.environ)


def main_py(*args, wait=True):
  command = [sys.executable, os.path.join(ROOT, 'main.py'), *args]
  if not wait:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=ENV)
  return subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=ENV)


def final_arrays(workdir):
  import numpy as np  # noqa: PLC0415  (only this part needs JAX in this process)
  import orbax.checkpoint as ocp  # noqa: PLC0415
  from tests.conftest import read_checkpoint  # noqa: PLC0415
  state = read_checkpoint(os.path.join(workdir, 'checkpoints', '60'))
  return {name: np.asarray(x) for name, x in ocp.tree.to_flat_dict(state).items()}


def untimed_rows(workdir):
  """metrics.jsonl's rows without the keys that measure the machine."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items()
             if k not in ('images_per_sec', 'steps_per_sec')} for line in f]


def tear_next_append(workdir, straight, rng):
  """Leaves metrics.jsonl as a kill inside its next append would: the line the run writes
  next (the uninterrupted run's line of that step) cut at a random byte, without its newline.
  Returns (its step, bytes written, its length), or None after the last line."""
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path, 'rb') as f:
    ours = f.read().splitlines()
  with open(os.path.join(straight, 'metrics.jsonl'), 'rb') as f:
    theirs = f.read().splitlines()
  if len(theirs) <= len(ours):
    return None
  line = theirs[len(ours)]
  keep = rng.randrange(1, len(line) + 1)
  with open(path, 'ab') as f:
    f.write(line[:keep])
  return json.loads(line)['step'], keep, len(line)


def kill_points(root, count, seed, tear):
  rng = random.Random(seed)
  straight = os.path.join(root, 'straight')
  main_py(*TINY, f'--workdir={straight}')
  expected, expected_rows = final_arrays(straight), untimed_rows(straight)
  identical = 0
  for i in range(count):
    workdir = os.path.join(root, f'killed{i}')
    after, delay = rng.choice(range(5, 55, 5)), rng.uniform(0, 0.05)
    run = main_py(*TINY, f'--workdir={workdir}', wait=False)
    while not os.path.isdir(os.path.join(workdir, 'checkpoints', str(after))):
      time.sleep(0.002)
    time.sleep(delay)
    run.kill()
    run.communicate()
    torn = tear and tear_next_append(workdir, straight, rng)
    torn = f'; torn append of step {torn[0]} ({torn[1]} of {torn[2]} bytes)' if torn else ''
    saves = sorted(glob.glob(os.path.join(workdir, 'checkpoints', '*')))
    rerun = main_py(*TINY, f'--workdir={workdir}')
    resumed = re.search(r'Resuming at step (\d+)', rerun.stdout + rerun.stderr)
    got = final_arrays(workdir)
    rows = untimed_rows(workdir)
    differ = [name for name in expected if name not in got or (got[name] != expected[name]).any()]
    differ += [f'metrics.jsonl step {a.get("step")}' for a, b in zip(rows, expected_rows) if a != b]
    differ += ['metrics.jsonl length'] * (len(rows) != len(expected_rows))
    same = not differ
    identical += same
    print(f'kill {i + 1}: {delay * 1000:.0f} ms after checkpoint {after} '
          f'(on disk: {", ".join(os.path.basename(s) for s in saves)}){torn}; resumed at '
          f'{resumed.group(1) if resumed else "?"}; {"identical" if same else "DIFFERENT: " + ", ".join(map(str, differ[:4]))}')
    shutil.rmtree(workdir)
  print(f'{identical} of {count} killed runs finished bit-identical (seed {seed})')


def preset_timings(root, preset):
  workdir = os.path.join(root, preset)
  config = presets.preset(preset)
  args = config.to_flags().split() + [f'--workdir={workdir}', '--num_steps=1000000',
                                      '--checkpoint_every=3',
                                      '--sample_every=1000000']
  run = main_py(*args, wait=False)
  lines = []
  for line in run.stdout:  # three saves, then SIGTERM in the middle of a step
    lines.append(line)
    if sum('Saving checkpoint' in seen for seen in lines) == 3:
      break
  signalled = time.perf_counter()
  run.send_signal(signal.SIGTERM)
  rest, _ = run.communicate()
  exited = time.perf_counter() - signalled
  blocking = [float(m) for m in re.findall(r'Saving checkpoint \d+ \(([\d.]+) s blocking',
                                           ''.join(lines) + rest)]
  stopped = re.search(r'Stopped by SIGTERM at step (\d+)', rest)
  print(f'{preset}: checkpoint saves block for {", ".join(f"{b:.2f}" for b in blocking)} s; '
        f'SIGTERM to exit {exited:.2f} s (exit status {run.returncode}, stopped at step '
        f'{stopped.group(1) if stopped else "?"})')


def main(argv):
  del argv
  seed = FLAGS.seed if FLAGS.seed is not None else random.randrange(10**6)
  root = tempfile.mkdtemp()
  try:
    if FLAGS.kill_points:
      kill_points(root, FLAGS.kill_points, seed, FLAGS.tear)
    if FLAGS.preset:
      preset_timings(root, FLAGS.preset)
  finally:
    shutil.rmtree(root)


if __name__ == '__main__':
  app.run(main)

"""Runs that survive anything: killed, stopped, damaged, out of disk or NaN, the finished run is
bit for bit the run that was never interrupted, and no checkpoint is lost or non-finite."""

import contextlib
import glob
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from facegan_jax import train
from facegan_jax.errors import UsageError
from tests.conftest import (ROOT, TINY, copy_run, main_config, main_env, main_py, metrics,
                            read_checkpoint, started_main, tensorboard_events)

# The metrics.jsonl keys that measure the machine, not the run.
TIMING = ('images_per_sec', 'steps_per_sec')
# The run's own line once checkpoint N's save has started (train.py). Orbax starts a save by
# finishing the one in flight, so from this line on checkpoint N - --checkpoint_every is on
# disk (or a newer one: retention deletes only older checkpoints, once a newer one is done).
SAVING = r'Saving checkpoint (\d+) '


def log(run):
  return run.stdout + run.stderr


def saved_state(workdir, step):
  return read_checkpoint(os.path.join(workdir, 'checkpoints', str(step)))


def assert_same_run(ours, theirs, last_step):
  """Bit-identical final checkpoints and identical metrics.jsonl rows at every logged step,
  every key (health flags included) but the timing ones."""
  a, b = saved_state(ours, last_step), saved_state(theirs, last_step)
  flat_a, flat_b = ocp.tree.to_flat_dict(a), ocp.tree.to_flat_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for name in flat_a:
    np.testing.assert_array_equal(np.asarray(flat_a[name]), np.asarray(flat_b[name]),
                                  err_msg=str(name))
  rows_a, rows_b = metrics(ours), metrics(theirs)
  assert [r['step'] for r in rows_a] == [r['step'] for r in rows_b]
  for row_a, row_b in zip(rows_a, rows_b):
    assert {'d_loss', 'diversity', 'd_wins', 'collapse'} <= row_a.keys()
    untimed = [{k: v for k, v in row.items() if k not in TIMING} for row in (row_a, row_b)]
    assert untimed[0] == untimed[1], row_a['step']
  # TensorBoard's curves too: what the interrupted runs logged after their last checkpoint is
  # purged, so each step is there once, with the uninterrupted run's value.
  events_a, events_b = tensorboard_events(ours), tensorboard_events(theirs)
  assert events_a['scalars'].keys() == events_b['scalars'].keys()
  for tag in events_a['scalars'].keys() - {f'train/{name}' for name in TIMING}:
    assert events_a['scalars'][tag] == events_b['scalars'][tag], tag
  assert [step for step, _ in events_a['scalars']['train/d_loss']] == [
      r['step'] for r in rows_a]
  assert events_a['images'] == events_b['images']


def test_sigkill_at_random_points_resumes_bit_identically(tmp_path, data_dir, deadline):
  # With a learning-rate schedule, whose position is the optimizers' step count, lazy R1 (its
  # steps follow the D step count too), two D updates per step (two batches read per step),
  # and the state that is not parameters: spectral-norm vectors and ADA's p. ADA's colour
  # transforms only: p adapts and drives them as it drives the blits and the geometric ones,
  # which take several times as long to trace and compile (each D update traces ADA anew, in
  # each of the three runs).
  args = TINY + [f'--data_dir={data_dir}', '--num_steps=40', '--checkpoint_every=5',
                 '--lr_decay=linear', '--lr_decay_start=20', '--r1_gamma=1', '--r1_every=3',
                 '--d_steps=2', '--spectral_norm=gd', '--augment=ada', '--ada_kimg=0.5',
                 '--ada_pipeline=color']
  straight = str(tmp_path / 'straight')
  assert main_py(*args, f'--workdir={straight}').returncode == 0
  assert len({row['ada_p'] for row in metrics(straight)}) > 1  # p moves, so its resume counts
  # A failure names its seed; FACEGAN_TEST_SEED=N reruns that case.
  seed = int(os.environ.get('FACEGAN_TEST_SEED', random.randrange(10**6)))
  print(f'FACEGAN_TEST_SEED={seed}')
  rng = random.Random(seed)
  # One random point per test run (benchmarks/resilience.py tries many).
  workdir = str(tmp_path / 'killed')
  after, delay = rng.choice(range(5, 35, 5)), rng.uniform(0, 0.05)
  with started_main(*args, f'--workdir={workdir}', log=str(tmp_path / 'killed.log')) as run:
    # Checkpoint `after` is finished once the next save has started.
    assert run.wait_for_line(SAVING, deadline, lambda m: int(m[1]) > after), run.tail()
    time.sleep(delay)
    run.kill()
  rerun = main_py(*args, f'--workdir={workdir}')
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  resumed = int(log(rerun).split('Resuming at step ')[1].split()[0])
  assert resumed >= after, (seed, after, delay)
  assert_same_run(workdir, straight, 40)
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '*tmp*'))


def test_sigterm_on_two_devices_saves_exits_0_and_resumes_bit_identically(tmp_path, data_dir,
                                                                          deadline):
  """SIGTERM at a random point of a run too long to end first; the stopped run, rerun to a
  step past the stop, is the uninterrupted run of that length."""
  args = TINY + [f'--data_dir={data_dir}', '--checkpoint_every=50', '--log_every=20',
                 '--sample_every=1000', '--loss=wgan', '--gp_weight=10', '--augment=diffaug']
  stopped = str(tmp_path / 'stopped')
  never_reached = 10**6  # hours of steps: the signal lands first, whatever the load
  with started_main(*args, f'--num_steps={never_reached}', f'--workdir={stopped}', devices=2,
                    log=str(tmp_path / 'stopped.log')) as run:
    # The first logged step: training, past compiling, the stop handlers in place.
    assert run.wait_for_line(rf'step 20/{never_reached} ', deadline), run.tail()
    time.sleep(random.uniform(0, 0.2))
    run.send_signal(signal.SIGTERM)
    assert run.wait(deadline) == 0, run.tail()
    output = run.output()
  stop_step = int(output.split('Stopped by SIGTERM at step ')[1].split(';')[0])
  assert 20 <= stop_step < never_reached
  assert os.path.isdir(os.path.join(stopped, 'checkpoints', str(stop_step)))
  num_steps = (stop_step // 20 + 2) * 20  # one or two log steps after the resume
  straight = str(tmp_path / 'straight')  # in process, as main.py runs it
  train.train_and_evaluate(*main_config(*args, f'--num_steps={num_steps}',
                                        f'--workdir={straight}', '--num_devices=2'))
  rerun = main_py(*args, f'--num_steps={num_steps}', f'--workdir={stopped}', devices=2)
  assert rerun.returncode == 0 and f'Resuming at step {stop_step}' in log(rerun)
  assert_same_run(stopped, straight, num_steps)


def test_sigkill_during_an_async_save_resumes_from_the_last_finished(tmp_path, data_dir, deadline):
  args = TINY + [f'--data_dir={data_dir}', '--num_steps=400', '--checkpoint_every=1',
                 '--keep_checkpoints=2', '--sample_every=1000', '--log_every=100']
  in_flight = '*.orbax-checkpoint-tmp*'

  def a_save_in_flight(workdir, run):
    """Waits until some save's temporary directory exists; False if the run ended first.
    With a save at every step, each waiting for the one before, one exists most of the time
    (a poll that misses one sees the next)."""
    while not glob.glob(os.path.join(workdir, 'checkpoints', in_flight)):
      if run.process.poll() is not None:
        return False
      deadline.left()
      time.sleep(0.002)
    return True

  for attempt in range(5):  # a save takes tens of ms: the kill lands in one almost always
    workdir = str(tmp_path / f'run{attempt}')
    with started_main(*args, f'--workdir={workdir}',
                      log=str(tmp_path / f'run{attempt}.log')) as run:
      # Past compiling, saving at every step.
      assert run.wait_for_line(SAVING, deadline, lambda m: int(m[1]) >= 3), run.tail()
      if a_save_in_flight(workdir, run):
        run.kill()
    if glob.glob(os.path.join(workdir, 'checkpoints', in_flight)):
      break
  else:
    raise AssertionError('no kill landed inside a save in 5 attempts')
  finished = max(int(os.path.basename(p)) for p in glob.glob(f'{workdir}/checkpoints/[0-9]*')
                 if os.path.basename(p).isdigit())
  rerun = main_py(*args, f'--workdir={workdir}', f'--num_steps={finished + 2}')
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f'Resuming at step {finished}' in log(rerun)
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '*tmp*'))


def test_damaged_checkpoints_fall_back_keep_the_last_n_and_init_others(tmp_path, data_dir,
                                                                        caplog):
  """In process, as main.py calls train.train_and_evaluate (one device): what is checked is
  the runs' files and log lines, which need no process of their own."""
  workdir = str(tmp_path / 'run')
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={workdir}', '--num_steps=40',
                 '--checkpoint_every=5', '--keep_checkpoints=4', '--num_devices=1']
  caplog.set_level('INFO')
  train.train_and_evaluate(*main_config(*args))
  checkpoints = os.path.join(workdir, 'checkpoints')
  assert sorted(os.listdir(checkpoints), key=int) == ['25', '30', '35', '40']  # 8 saves

  def largest_file(step):
    files = glob.glob(os.path.join(checkpoints, str(step), 'state', '**', '*'), recursive=True)
    return max((f for f in files if os.path.isfile(f)), key=os.path.getsize)

  def flip_a_byte(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0x01
    open(path, 'wb').write(bytes(data))

  flip_a_byte(largest_file(40))
  os.truncate(largest_file(35), os.path.getsize(largest_file(35)) // 2)
  os.remove(largest_file(30))
  # And metrics.jsonl's last line cut mid-way, as a kill during an append leaves it.
  log_path = os.path.join(workdir, 'metrics.jsonl')
  os.truncate(log_path, os.path.getsize(log_path) - 40)
  torn = open(log_path).read().splitlines()[-1]
  caplog.clear()
  train.train_and_evaluate(*main_config(*args))
  rerun = caplog.text
  assert f'{log_path}: 1 damaged line(s) (line 8)' in rerun
  # Set aside with the lines logged after checkpoint 25, not deleted.
  aside = open(os.path.join(workdir, 'metrics_set_aside.txt')).read().splitlines()
  assert aside[-1] == torn and [json.loads(line)['step'] for line in aside[:-1]] == [30, 35]
  for step in (40, 35, 30):
    assert f'Checkpoint {checkpoints}/{step} is damaged' in rerun, step
    # Set aside, not deleted.
    assert os.path.isdir(os.path.join(workdir, 'damaged_checkpoints', str(step)))
  assert 'Resuming at step 25' in rerun
  assert sorted(os.listdir(checkpoints), key=int) == ['25', '30', '35', '40']
  rows = metrics(workdir)
  assert [r['step'] for r in rows] == list(range(5, 41, 5))  # no duplicated lines

  # Another run starts from this one's weights (fresh optimizers and step)...
  target = str(tmp_path / 'target')
  init = [f'--workdir={target}', f'--init_checkpoint={workdir}', '--num_steps=5']
  caplog.clear()
  train.train_and_evaluate(*main_config(*args, *init))
  assert f'Starting at step 0 from the weights of step 40 in {checkpoints}' in caplog.text
  assert int(saved_state(target, 5)['g_opt'][0]['count']) == 5
  # ...but not with other shapes, nor from a directory of damaged checkpoints only (each is
  # named, none is moved): the UsageErrors main.py prints as one line (tests/test_main.py),
  # raised as the run starts; in process, as main.py calls it.
  other = str(tmp_path / 'other')
  message = (f'--init_checkpoint 25 in {checkpoints} was trained with --conv_dim=8, this run '
             'has --conv_dim=16; use another --workdir or the same flags')
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    train.train_and_evaluate(*main_config(*args, f'--workdir={other}', '--conv_dim=16',
                                          f'--init_checkpoint={checkpoints}/25'))
  damaged = os.path.join(workdir, 'damaged_checkpoints')
  caplog.set_level('WARNING')
  message = f'--init_checkpoint={damaged}: no undamaged checkpoint in {damaged}'
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    train.train_and_evaluate(*main_config(*args, f'--workdir={other}',
                                          f'--init_checkpoint={damaged}'))
  for step in (40, 35, 30):
    assert f'Checkpoint {damaged}/{step} is damaged' in caplog.text, step
  assert sorted(os.listdir(damaged), key=int) == ['30', '35', '40']


def test_disk_full_while_saving_is_one_line_and_keeps_the_last_checkpoint(tmp_path, data_dir,
                                                                          deadline, caplog):
  workdir = str(tmp_path / 'run')
  # At --conv_dim=16 G's second kernel alone is 131 kB, so whichever files orbax packs the
  # arrays into (their sizes vary with the timing of its writes), one is over the limit set
  # below; the run's other files (logs, pictures) stay under it.
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={workdir}', '--conv_dim=16']
  # The run to go on from and the rerun that goes on: in process, as main.py calls them.
  train.train_and_evaluate(*main_config(*args, '--num_steps=10', '--num_devices=1'))

  # main.py with a 30 kB limit on file sizes: a write past it fails with EFBIG (SIGXFSZ
  # ignored), as a full disk fails with ENOSPC.
  small_files_only = (
      'import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '
      'resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000)); '
      'sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")')
  env = dict(main_env(), JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=str(10**12))  # no writes
  full = subprocess.run([sys.executable, '-c', small_files_only, os.path.join(ROOT, 'main.py'),
                         *args, '--num_steps=20'], env=env, capture_output=True, text=True,
                        cwd=ROOT, timeout=deadline.left())
  assert full.returncode == 1, full.stderr[-3000:]
  assert full.stderr.strip().splitlines()[-1] == (
      f'error: saving checkpoint 20 to {workdir}/checkpoints failed: file too large for the '
      'file system; checkpoint 10 is intact')
  assert 'Traceback' not in full.stderr
  caplog.set_level('INFO')
  train.train_and_evaluate(*main_config(*args, '--num_steps=20', '--num_devices=1'))
  assert 'Resuming at step 10' in caplog.text
  # Any other file that cannot be written (here real_batch.png, ~10 kB) is one line too.
  tiny = small_files_only.replace('30_000', '3_000')
  full = subprocess.run([sys.executable, '-c', tiny, os.path.join(ROOT, 'main.py'), *args,
                         '--num_steps=30'], env=env, capture_output=True, text=True, cwd=ROOT,
                        timeout=deadline.left())
  assert full.returncode == 1, full.stderr[-3000:]
  assert full.stderr.strip().splitlines()[-1] == (
      f'error: writing {workdir} failed: file too large for the file system; with space again, '
      'rerun the command to resume from the last checkpoint')
  assert 'Traceback' not in full.stderr


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='needs /dev/full (Linux)')
def test_no_space_left_writing_the_runs_files_is_one_line(tmp_path, data_dir, tiny_run):
  """ENOSPC (a full disk; EFBIG is above): every write to /dev/full fails with it."""
  workdir = copy_run(tiny_run[0], str(tmp_path / 'run'))  # TINY, 10 steps
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={workdir}', '--checkpoint_every=5']
  # A resume's first write: the line it appends to flags.txt.
  os.remove(os.path.join(workdir, 'flags.txt'))
  os.symlink('/dev/full', os.path.join(workdir, 'flags.txt'))
  full = main_py(*args, '--num_steps=20')
  assert full.returncode == 1, full.stderr[-3000:]
  assert full.stderr.strip().splitlines()[-1] == (
      f'error: writing {workdir} failed: no space left on the device; with space again, '
      'rerun the command to resume from the last checkpoint')
  assert 'Traceback' not in full.stderr


def test_nan_stops_with_exit_1_and_saves_no_non_finite_state(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  # An absurd learning rate: step 2's update leaves an infinite BatchNorm variance in D while
  # step 2's losses (computed before the update) are still finite.
  absurd = main_py(*TINY, f'--data_dir={data_dir}', f'--workdir={workdir}', '--num_steps=30',
                   '--checkpoint_every=1', '--lr_d=1e10', '--lr_g=1e10')
  assert absurd.returncode == 1
  assert absurd.stderr.strip().splitlines()[-1] == (
      'error: non-finite values in d_stats.bns.0.var.value at step 2; not saved (checkpoint 1 '
      'is kept)')
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['1']
  state = ocp.tree.to_flat_dict(saved_state(workdir, 1))
  assert all(np.isfinite(np.asarray(x)).all() for x in state.values())


@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='needs /proc (Linux)')
def test_a_second_sigint_exits_at_once(tmp_path, data_dir, deadline):
  """The second SIGINT has to land between the first one's handler and the end of the stop
  it starts (a save, tens of ms). No timing decides it: the run's stdout is a pipe that the
  test fills once training is under way, so the run's next log line (the progress line of
  the next log step or the 'Saving checkpoint' line, both before the stop is done) blocks
  until the end; a signal interrupts the blocked write and its handler runs."""
  workdir = str(tmp_path / 'run')
  read_end, write_end = os.pipe()
  # Our own open file description of the pipe, non-blocking for us only.
  filler = os.open(f'/proc/self/fd/{write_end}', os.O_WRONLY | os.O_NONBLOCK)
  try:
    with started_main(*TINY, f'--data_dir={data_dir}', f'--workdir={workdir}',
                      '--num_steps=100000', '--checkpoint_every=100000',
                      '--sample_every=100000', stdout=write_end,
                      log=str(tmp_path / 'stderr.log')) as run:
      os.close(write_end)
      write_end = None
      output = b''
      while b'step 5/100000 ' not in output:  # training, the stop handlers in place
        if select.select([read_end], [], [], deadline.left())[0]:
          data = os.read(read_end, 1 << 16)
          assert data, (output + run.output().encode())[-3000:]  # main.py ended
          output += data
      for size in (4096, 1):  # fill the pipe to its last byte
        with contextlib.suppress(BlockingIOError):
          while True:
            os.write(filler, b'.' * size)
      run.send_signal(signal.SIGINT)
      assert run.wait_for_line(r'^SIGINT: finishing this step', deadline), run.tail()
      run.send_signal(signal.SIGINT)
      assert run.wait(deadline) == 128 + signal.SIGINT, run.tail()
      assert 'Second SIGINT: exiting now without saving' in run.output()
  finally:
    for fd in (read_end, write_end, filler):
      if fd is not None:
        os.close(fd)

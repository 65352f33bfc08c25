"""Many processes, one run: 2 CPU processes (gloo over localhost, 1 device each) train exactly
as 1 process with 2 devices."""

import contextlib
import os
import signal
import socket

import jax
import numpy as np

from facegan_jax import train
from tests.conftest import (TINY, main_config, metrics, read_checkpoint, started_main,
                            tensorboard_events, wait_for_exits)


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_train_as_one_process_with_two_devices(tmp_path, data_dir, deadline):
  args = TINY + [f'--data_dir={data_dir}', '--num_steps=20', '--checkpoint_every=20']
  one = str(tmp_path / 'one')  # one process with 2 devices: this one, as main.py runs it
  train.train_and_evaluate(*main_config(*args, f'--workdir={one}', '--num_devices=2'))

  two = str(tmp_path / 'two')
  address = f'localhost:{_free_port()}'
  with contextlib.ExitStack() as stack:  # on leaving, both are killed if still running
    runs = [stack.enter_context(started_main(
        *args, f'--workdir={two}', f'--coordinator_address={address}', '--num_processes=2',
        f'--process_id={i}', log=str(tmp_path / f'process{i}.log'))) for i in range(2)]
    codes = wait_for_exits(runs, deadline)
    for run, code in zip(runs, codes):
      assert code == 0, (codes, run.tail())
    logs = [run.output() for run in runs]
  assert 'on 2 cpu device(s)' in logs[0] and 'on 2 cpu device(s)' in logs[1]

  keys = ('d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm', 'diversity')
  rows_one, rows_two = metrics(one), metrics(two)
  assert [r['step'] for r in rows_two] == [5, 10, 15, 20]  # written once, by process 0
  for a, b in zip(rows_one, rows_two, strict=True):
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, a['step']
  ours = read_checkpoint(os.path.join(one, 'checkpoints', '20'))
  theirs = read_checkpoint(os.path.join(two, 'checkpoints', '20'))
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
    np.testing.assert_array_equal(a, b)
  assert sorted(os.listdir(os.path.join(two, 'samples'))) == [
      'progress.gif', 'step_0000010.png', 'step_0000020.png']
  # One TensorBoard event file, process 0's, with each logged step once.
  assert len(os.listdir(os.path.join(two, 'tensorboard'))) == 1
  assert [step for step, _ in tensorboard_events(two)['scalars']['train/d_loss']] == [
      5, 10, 15, 20]


def _two_processes(tmp_path, args, name):
  address = f'localhost:{_free_port()}'
  return [started_main(*args, f'--coordinator_address={address}', '--num_processes=2',
                       f'--process_id={i}', log=str(tmp_path / f'{name}{i}.log'))
          for i in range(2)]


def test_a_signal_to_one_process_stops_both_at_the_same_step(tmp_path, data_dir, deadline):
  """Each process sees its own signals: they agree on the stop at every call, so the one
  that got none stops with the other instead of waiting for it in a collective."""
  never_reached = 10**6
  workdir = str(tmp_path / 'run')
  args = TINY + [f'--data_dir={data_dir}', f'--num_steps={never_reached}', '--log_every=10',
                 '--sample_every=1000', '--checkpoint_every=1000', f'--workdir={workdir}']
  with contextlib.ExitStack() as stack:
    runs = [stack.enter_context(run) for run in _two_processes(tmp_path, args, 'process')]
    assert runs[0].wait_for_line(rf'step 10/{never_reached} ', deadline), runs[0].tail()
    runs[1].send_signal(signal.SIGTERM)
    codes = wait_for_exits(runs, deadline)
    logs = [run.output() for run in runs]
  assert codes == [0, 0], (logs[0][-2000:], logs[1][-2000:])
  steps = [int(log.split('Stopped by ')[1].split(' at step ')[1].split(';')[0]) for log in logs]
  assert steps[0] == steps[1] >= 10
  assert 'Stopped by a stop signal to another process' in logs[0]
  assert 'Stopped by SIGTERM' in logs[1]
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == [str(steps[0])]


def test_when_process_0_cannot_prepare_the_data_every_process_stops(tmp_path, deadline):
  """The others wait for process 0 to prepare the data; its failure ends them too."""
  folder = tmp_path / 'not_images'
  folder.mkdir()
  for i in range(20):
    (folder / f'{i}.png').write_bytes(b'not a png')
  args = [f'--dataset=folder:{folder}', f'--data_dir={tmp_path / "data"}',
          f'--workdir={tmp_path / "run"}', '--resolution=16', '--batch_size=16']
  with contextlib.ExitStack() as stack:
    runs = [stack.enter_context(run) for run in _two_processes(tmp_path, args, 'process')]
    codes = [run.wait(deadline) for run in runs]  # both end, neither waits for the other
    logs = [run.output() for run in runs]
  assert codes == [1, 1], (logs[0][-2000:], logs[1][-2000:])
  assert logs[0].strip().splitlines()[-1].startswith('error: ')
  assert logs[1].strip().splitlines()[-1] == (
      'error: process 0 could not prepare the data (its log says why)')

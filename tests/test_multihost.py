"""Many processes, one run: 2 CPU processes (gloo over localhost, 1 device each) train exactly
as 1 process with 2 devices."""

import contextlib
import os
import socket

import jax
import numpy as np

from tests.conftest import (TINY, main_py, metrics, read_checkpoint, started_main,
                            tensorboard_events, wait_for_exits)


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_train_as_one_process_with_two_devices(tmp_path, data_dir, deadline):
  args = TINY + [f'--data_dir={data_dir}', '--num_steps=20', '--checkpoint_every=20']
  one = str(tmp_path / 'one')
  single = main_py(*args, f'--workdir={one}', devices=2)
  assert single.returncode == 0, single.stderr[-2000:]

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

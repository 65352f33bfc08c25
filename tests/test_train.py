"""The training loop (train.py) in process: what a stop signal does before and during
training. A signal is sent by the run itself at a chosen point, so each case is exact."""

import dataclasses
import os
import signal

import jax
import numpy as np
import pytest
from PIL import Image

from facegan_jax import config as config_lib
from facegan_jax import step as step_lib
from facegan_jax import train
from facegan_jax.errors import UsageError
from facegan_jax.run import memory
from tests.conftest import metrics, read_checkpoint

TINY = dict(dataset='synthetic_faces/small', resolution=16, conv_dim=8, z_dim=8, batch_size=16,
            log_every=5, sample_every=10, checkpoint_every=10, ema_decay=0.9, num_devices=1,
            tensorboard=False)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_training_starts_ends_the_run_saving_nothing(tmp_path, data_dir,
                                                                    monkeypatch, caplog, signum):
  """Ctrl-C or SIGTERM while the step compiles: one line, no traceback, no checkpoint, the
  workdir unlocked (the same command then starts the run)."""
  def signalled(compiled, config):
    os.kill(os.getpid(), signum)

  monkeypatch.setattr(memory, 'check', signalled)
  config = config_lib.Config(**TINY, data_dir=data_dir, num_steps=10)
  caplog.set_level('INFO')
  assert train.train_and_evaluate(config, str(tmp_path)) is None
  name = signal.Signals(signum).name
  assert f'Interrupted by {name} before training started; nothing to save' in caplog.text
  assert not os.path.exists(tmp_path / 'checkpoints')
  monkeypatch.undo()
  train.train_and_evaluate(config, str(tmp_path))  # not locked; trains
  assert os.listdir(tmp_path / 'checkpoints') == ['10']


def test_a_stop_on_an_evaluation_step_is_evaluated_on_resume(tmp_path, data_dir, monkeypatch,
                                                              attribute_net_cache):
  """A stop is prompt: it saves the state of the step it lands on without evaluating it. The
  resumed run evaluates that step first, so its log and best checkpoint are the uninterrupted
  run's."""
  monkeypatch.setenv('XDG_CACHE_HOME', attribute_net_cache)  # the session's trained network
  config = config_lib.Config(**TINY, data_dir=data_dir, num_steps=20, eval_every=10,
                             eval_samples=64, best_metric='swd')
  make_train_fn = step_lib.make_train_fn

  def stopped_at(step):
    def make(*args, **kwargs):
      train_fn = make_train_fn(*args, **kwargs)

      class Stopping:
        lower = train_fn.lower

        def __call__(self, state, inputs, num_steps, first_step):
          if first_step + num_steps == step:
            os.kill(os.getpid(), signal.SIGTERM)
          return train_fn(state, inputs, num_steps, first_step)
      return Stopping()
    return make

  runs = {}
  for name, stop in (('whole', None), ('stopped', 10), ('stopped_last', 20)):
    workdir = str(tmp_path / name)
    if stop:
      monkeypatch.setattr(step_lib, 'make_train_fn', stopped_at(stop))
      train.train_and_evaluate(config, workdir)
      assert not [row for row in metrics(workdir) if row['step'] == stop and 'eval' in row]
      monkeypatch.setattr(step_lib, 'make_train_fn', make_train_fn)
    train.train_and_evaluate(config, workdir)
    runs[name] = workdir

  def evaluations(workdir):
    return [(row['step'], row['eval']['metrics']) for row in metrics(workdir) if 'eval' in row]

  whole = evaluations(runs['whole'])
  assert [step for step, _ in whole] == [10, 20]
  for name in ('stopped', 'stopped_last'):
    assert evaluations(runs[name]) == whole, name
    best = os.listdir(os.path.join(runs['whole'], 'best_checkpoint'))
    assert os.listdir(os.path.join(runs[name], 'best_checkpoint')) == best
    a, b = (read_checkpoint(os.path.join(runs[n], 'best_checkpoint', best[0]))
            for n in ('whole', name))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_array_equal(x, y)


def test_a_folder_whose_images_changed_is_not_resumed_without_a_word(tmp_path):
  """Images added, removed or replaced since the checkpoint: one line naming the change and
  the flag that resumes on purpose (recorded in flags.txt like any flag changed on resume)."""
  folder = tmp_path / 'faces'
  folder.mkdir()
  rng = np.random.default_rng(0)

  def write(names):
    for name in names:
      Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(folder / f'{name}.png')

  write(range(20))
  config = config_lib.Config(**dict(TINY, dataset=f'folder:{folder}'),
                             data_dir=str(tmp_path / 'data'), num_steps=10)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  more = dataclasses.replace(config, num_steps=20)
  write(range(20, 24))
  with pytest.raises(UsageError, match=rf'^--dataset=folder:{folder} has changed since checkpoint '
                     r'10 was saved \(20 images then, 24 now\); pass --data_may_change to '
                     r'resume on the images as they are now, or use another --workdir$'):
    train.train_and_evaluate(more, workdir)
  for name in range(20, 24):
    os.remove(folder / f'{name}.png')
  write([0])  # as many images as the checkpoint's, one of them replaced
  with pytest.raises(UsageError, match=r'\(other files, as many\)'):
    train.train_and_evaluate(more, workdir)
  train.train_and_evaluate(dataclasses.replace(more, data_may_change=True), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '20']
  with open(os.path.join(workdir, 'flags.txt')) as f:
    assert f.read().endswith(
        '# Resumed at step 10 with:\n--data_may_change=true\n--num_steps=20\n')

"""main.py end to end: every workdir output, resume, sampling, and one-line flag errors.

A test runs main.py in a process of its own where it checks what only a process shows (the
console, the `error:` line and exit status, XLA flags of its own); otherwise it runs what
main.py calls (train.train_and_evaluate, explore.explore) in process, on the Config main.py's
flags make of the same arguments (conftest.main_config).
"""

import dataclasses
import glob
import json
import os
import re
import socket
import time
import types

import jax
import numpy as np
import pytest
from PIL import Image

from facegan_jax import config as config_lib
from facegan_jax import explore
from facegan_jax import mesh as mesh_lib
from facegan_jax import resume
from facegan_jax import sample
from facegan_jax import state as state_lib
from facegan_jax import train
from facegan_jax import validation
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import distances
from facegan_jax.run import workdir as workdir_lib
from tests import conftest
from tests.conftest import (EXACT_XLA_FLAGS, TINY, assert_only_our_info_lines, copy_run,
                            info_lines, main_config, metrics, read_checkpoint,
                            tensorboard_events, train_in_a_process, xla_flags)
from tests.test_inception import random_inception_npz
from tests.test_visualize import D_COLOUR, G_COLOUR, curve_pixels


def main_py(*args, **kwargs):
  """conftest.main_py; whatever it does, every run here prints no library's INFO lines."""
  result = conftest.main_py(*args, **kwargs)
  assert_only_our_info_lines(result.stdout)
  return result


def test_train_writes_every_output_resumes_and_samples(tmp_path, data_dir, tiny_run,
                                                       attribute_net_cache, monkeypatch):
  # The session's TINY main.py run of 10 steps with --checkpoint_every=5, copied.
  trained, first = tiny_run
  workdir = copy_run(trained, str(tmp_path / 'run'))
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={workdir}']
  # A progress line at each log step, with the run's elapsed time (that a checkpoint does not
  # reset it: test_progress_lines_give_the_runs_elapsed_time_across_checkpoints).
  assert len(re.findall(r'elapsed \d+s, ETA', first['stdout'] + first['stderr'])) == 2
  assert {'train.py', 'metrics_log.py'} <= assert_only_our_info_lines(first['stdout'])
  for name in ('flags.txt', 'real_batch.png', 'samples/step_0000010.png', 'metrics.jsonl',
               'losses.png', 'checkpoints/10'):
    assert os.path.exists(os.path.join(workdir, name)), name
  rows = metrics(workdir)
  assert [r['step'] for r in rows] == [5, 10]
  assert {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm',
          'images_per_sec'} <= set(rows[-1])

  # flags.txt reruns the run as a --flagfile: with more steps it resumes from step 10 (that it
  # lands where an uninterrupted run does is tested in test_resume.py), even after a kill
  # took the log's last newline: the next line starts on a line of its own.
  os.truncate(os.path.join(workdir, 'metrics.jsonl'),
              os.path.getsize(os.path.join(workdir, 'metrics.jsonl')) - 1)
  rerun = main_py(f'--flagfile={workdir}/flags.txt', '--num_steps=20')
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert 'Resuming at step 10' in rerun.stdout + rerun.stderr

  # TensorBoard, over the two runs: every metrics.jsonl value at its step, once; the sample
  # grids; the flags once; the hparams plugin's records.
  events, rows = tensorboard_events(workdir), metrics(workdir)
  assert [r['step'] for r in rows] == [5, 10, 15, 20]
  for name in rows[-1].keys() - {'step'}:
    assert events['scalars'][f'train/{name}'] == [
        (r['step'], pytest.approx(r[name], rel=1e-6)) for r in rows if name in r], name
  assert events['images'] == {'samples': [10, 20]}
  with Image.open(os.path.join(workdir, 'samples', 'progress.gif')) as timelapse:
    assert timelapse.n_frames == 2
  assert events['text'] == {'flags/text_summary': [0]}
  assert {'_hparams_/experiment', '_hparams_/session_start_info'} <= events['hparams']

  sample_args = args + ['--mode=sample', '--num_samples=5', '--sample_seed=3']
  sampled = main_py(*sample_args)
  assert sampled.returncode == 0, sampled.stderr[-2000:]
  assert 'sample.py' in assert_only_our_info_lines(sampled.stdout)
  images = np.load(os.path.join(workdir, 'samples.npz'))['images']
  assert images.shape == (5, 16, 16, 3) and images.dtype == np.uint8
  assert os.path.exists(os.path.join(workdir, 'samples.png'))
  # They are the EMA generator's (--ema_decay=0.9) for seed 3's latents; without
  # --ema_decay, G's own.
  expected = _generators_images(workdir, num_samples=5)
  np.testing.assert_array_equal(images, expected['ema3'])
  np.testing.assert_array_equal(expected['sampled_without_ema'], expected['g3'])
  assert not np.array_equal(expected['ema3'], expected['g3'])  # the EMA G is not G
  assert not np.array_equal(expected['ema3'], expected['ema4'])  # another seed, other images

  # --mode=explore (what main.py calls, in process): the interpolation rows and the attribute
  # arithmetic, with their latents. The arithmetic itself: tests/test_explore.py.
  monkeypatch.setenv('XDG_CACHE_HOME', attribute_net_cache)
  config, _ = main_config(*args, '--mode=explore', '--interpolate=5', '--eval_samples=64',
                          '--num_devices=1')
  returned = explore.explore(config, workdir)
  monkeypatch.undo()
  out = os.path.join(workdir, 'explore')
  with Image.open(os.path.join(out, 'interpolation.png')) as figure:  # 8 rows of 5, 2x
    assert figure.size == (2 * (5 * 18 + 2), 2 * (8 * 18 + 2))
  with open(os.path.join(out, 'explore.json')) as f:
    summary = json.load(f)
  assert summary == returned and summary['step'] == 20
  assert set(summary['arithmetic']) == {'glasses', 'beard', 'long_hair'}
  drawn = np.load(os.path.join(out, 'latents.npz'))
  assert drawn['interpolation'].shape == (40, 8) and drawn['arithmetic_pool'].shape == (64, 8)
  for name, readout in summary['arithmetic'].items():
    if 'skipped' in readout:  # a 20-step G may draw too few faces with it
      assert not os.path.exists(os.path.join(out, f'arithmetic_{name}.png'))
      continue
    assert set(readout['share_after']) == {'1x', '2x', '3x'}
    before, direction = drawn[f'{name}_before'], drawn[f'{name}_direction']
    np.testing.assert_allclose(drawn[f'{name}_after'][8:16], before + 2 * direction, rtol=1e-5)
    assert os.path.exists(os.path.join(out, f'arithmetic_{name}.png'))

  # Random Inception weights (tests/test_inception.py): FID, KID and P&R are computed and
  # carry their provenance. Inception runs ~3x slower without XLA's optimisations than it
  # compiles faster, so this run keeps them. A fresh cache of real features; the attribute
  # network the session has trained.
  weights = random_inception_npz(str(tmp_path / 'inception.npz'))
  cache = tmp_path / 'cache' / 'facegan_jax'
  cache.mkdir(parents=True)
  (cache / 'attribute_net').symlink_to(os.path.join(attribute_net_cache, 'facegan_jax',
                                                    'attribute_net'))
  evaluated = main_py(*args, '--mode=eval', '--eval_samples=16',
                      f'--inception_weights={weights}', XLA_FLAGS='',
                      XDG_CACHE_HOME=str(tmp_path / 'cache'))
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  assert 'evaluate.py' in assert_only_our_info_lines(evaluated.stdout)
  with open(os.path.join(workdir, 'eval.json')) as f:
    record = json.load(f)
  assert {k: record[k] for k in ('step', 'dataset', 'dataset_version', 'resolution', 'n_real',
                                 'n_fake', 'generator')} == dict(
      step=20, dataset='synthetic_faces/small', dataset_version='1.0.0', resolution=16,
      n_real=16, n_fake=16, generator='ema')
  assert record['metrics']['swd']['value'] > 0 and record['metrics']['swd']['levels'] == [16]
  for name in ('fid', 'kid', 'precision', 'recall', 'inception_score'):
    value = record['metrics'][name]
    assert np.isfinite(value['value']), name
    assert value['resize'] == 'pytorch_fid' and len(value['weights_sha256']) == 64
  assert not record['metrics']['fid']['real_features_cached']
  # The numbers are those of these reals' features: from the features the run cached, the
  # reals' own Inception Score is the record's, and the reals against themselves score the
  # floor (precision and recall 1, a KID of the order of its sampling noise, an FID of 0),
  # which the 20-step G is well above.
  [cached] = glob.glob(str(cache / 'fid_features' / '*.npz'))
  with np.load(cached) as f, np.load(weights) as w:
    real = f['features'].astype(np.float64)
    logits = real @ w['fc.weight'].astype(np.float64).T + w['fc.bias'].astype(np.float64)
  assert real.shape == (16, 2048)
  score = record['metrics']['inception_score']
  assert score['real'] == pytest.approx(distances.inception_score(logits)[0], rel=1e-9)
  assert 1 <= score['value'] <= 1008 and score['std'] >= 0
  assert distances.precision_recall(real, real, k=3) == (1, 1)
  floor_kid = 1e3 * distances.kernel_inception_distance(real, real, subset_size=16)[0]
  assert abs(floor_kid) < record['metrics']['kid']['value']
  mu, sigma = distances.mean_and_covariance(real)
  assert abs(distances.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)
  assert record['metrics']['fid']['value'] > 1e-3 * np.trace(sigma)
  for name in ('domain_fd', 'attr_w1', 'attr_tv'):  # synthetic_faces' attribute network
    value = record['metrics'][name]
    assert value['value'] > 0 and len(value['weights_sha256']) == 64, name
  # Its floor: 16 other training faces against the 16 reals, under the 20-step G's distance.
  domain = record['metrics']['domain_fd']
  assert domain['n_floor'] == 16 and 0 < domain['floor'] < domain['value']
  assert 'real-vs-real floor (16 other reals)' in evaluated.stdout
  for name in ('SWD', 'domainFD', 'attr W1', 'attr TV', 'FID', 'KID', 'IS', 'P / R'):
    assert name in evaluated.stdout


def _generators_images(workdir, num_samples):
  """The images of the latest checkpoint's EMA generator and of G for the latents of seeds 3
  and 4, computed as main.py computes them (the same compiled G, on one device), and those
  sample.sample (--mode=sample) returns for seed 3 with --ema_decay=0."""
  config = config_lib.Config(**config_lib.read_flagfile(os.path.join(workdir, 'flags.txt')))
  config = dataclasses.replace(config, num_devices=1)
  state, _ = sample.load_latest(config, workdir)
  generate = state_lib.make_sample_fn(state)

  def images(params, seed):
    z = jax.random.normal(jax.random.PRNGKey(seed), (num_samples, config.z_dim))
    return state_lib.generate_images(generate, params, state.g_stats, z)
  without_ema = sample.sample(dataclasses.replace(config, ema_decay=0.0, sample_seed=3,
                                                  num_samples=num_samples), workdir)
  return dict(ema3=images(state.ema_params, 3), g3=images(state.g_params, 3),
              ema4=images(state.ema_params, 4), sampled_without_ema=without_ema)


# The one-line path of main.py's errors, end to end: a flag validation rejects before anything
# compiles, an empty --workdir, and an empty --flagfile that main.py itself catches. Each other
# flag's error is checked in process: tests/test_config.py (validation), test_workdir.py (the
# other --workdir checks main.py makes) and
# test_errors_found_as_the_run_starts_are_usage_errors below (the run's start).
@pytest.mark.parametrize('flag, message', [
    ('--loss=wasserstein', '--loss=wasserstein is not one of bce, lsgan, hinge, wgan'),
    ('--workdir=', '--workdir is empty (an unset shell variable?)'),
    ('--flagfile=', '--flagfile is empty (an unset shell variable?); name a flagfile'),
])
def test_bad_flags_give_one_line_errors(tmp_path, flag, message):
  result = main_py(*TINY, f'--workdir={tmp_path}', *flag.split(), devices=2)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(f'error: {message}')
  assert 'Traceback' not in result.stderr


def test_eval_every_logs_metrics_and_keeps_the_best_checkpoint(tmp_path, data_dir,
                                                               attribute_net_cache, monkeypatch):
  # In process, as main.py runs it on one device; synthetic_faces' evaluations read the
  # session's attribute network.
  monkeypatch.setenv('XDG_CACHE_HOME', attribute_net_cache)
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={tmp_path}', '--eval_every=10',
                 '--eval_samples=64', '--best_metric=swd', '--keep_checkpoints=4',
                 '--num_devices=1']
  for num_steps in (20, 40):  # the second run resumes at 20 with the best value so far
    train.train_and_evaluate(*main_config(*args, f'--num_steps={num_steps}'))
  rows = [row for row in metrics(str(tmp_path)) if 'eval' in row]
  assert [row['step'] for row in rows] == [10, 20, 30, 40]
  for row in rows:
    record = row['eval']
    assert record['step'] == row['step'] and record['n_fake'] == record['n_real'] == 64
    assert record['dataset'] == 'synthetic_faces/small' and record['dataset_version']
  values = [row['eval']['metrics']['swd']['value'] for row in rows]
  assert len(set(values)) == 4  # the generator changed between evaluations
  # Every evaluation metric in TensorBoard too, at its step, once across the resume.
  scalars = tensorboard_events(str(tmp_path))['scalars']
  for name in rows[0]['eval']['metrics']:
    assert scalars[f'eval/{name}'] == [
        (row['step'], pytest.approx(row['eval']['metrics'][name]['value'], rel=1e-6))
        for row in rows], name
  best = rows[int(np.argmin(values))]['step']
  assert os.listdir(tmp_path / 'best_checkpoint') == [str(best)]
  assert os.path.exists(tmp_path / 'losses.png')
  # The best state is the one the regular checkpoint of that step holds.
  kept = read_checkpoint(str(tmp_path / 'best_checkpoint' / str(best)))
  regular = read_checkpoint(str(tmp_path / 'checkpoints' / str(best)))
  for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(regular), strict=True):
    np.testing.assert_array_equal(a, b)


def test_progress_lines_give_the_runs_elapsed_time_across_checkpoints(tmp_path, data_dir,
                                                                      monkeypatch, caplog):
  """A progress line's elapsed time is the run's, not restarted by the checkpoint before it:
  on a clock that jumps 1000 s while step 5's checkpoint saves, step 5's line (logged before
  the save) shows less than 1000 s and step 10's more."""
  perf_counter, jumped = time.perf_counter, [0.0]
  monkeypatch.setattr(train, 'time', types.SimpleNamespace(
      perf_counter=lambda: perf_counter() + jumped[0]))
  save = Checkpoints.save

  def slow_save(self, state, step):
    jumped[0] += 1000
    return save(self, state, step)

  monkeypatch.setattr(Checkpoints, 'save', slow_save)
  caplog.set_level('INFO')
  train.train_and_evaluate(*main_config(*TINY, f'--data_dir={data_dir}', f'--workdir={tmp_path}',
                                        '--num_steps=10', '--checkpoint_every=5',
                                        '--tensorboard=false', '--num_devices=1'))
  elapsed = [int(s) for s in re.findall(r'step (?:5|10)/10 \|.* elapsed (\d+)s, ETA', caplog.text)]
  assert len(elapsed) == 2 and elapsed[0] < 1000 <= elapsed[1], elapsed


def test_resume_keeps_the_runs_flags_and_records_the_ones_it_may_change(tmp_path, data_dir,
                                                                        tiny_run, caplog):
  """Flags that fix what the run computes cannot change on resume (one line names each);
  those that may (the length, schedules, learning rates) apply and are logged, and flags.txt
  keeps their history while still rerunning the run as a --flagfile. The runs in process, as
  main.py calls them, on this process's two devices (--num_devices=0, all, as the tiny run's
  was); main.py prints their UsageErrors as one `error:` line (test_bad_flags_...)."""
  workdir = copy_run(tiny_run[0], str(tmp_path / 'run'))  # TINY, 10 steps, checkpoint_every=5
  args = TINY + ['--checkpoint_every=5', f'--data_dir={data_dir}', f'--workdir={workdir}']
  flags_before = (tmp_path / 'run' / 'flags.txt').read_text()
  message = (f'checkpoint 10 in {workdir}/checkpoints was trained with --conv_dim=8 --seed=0, '
             'this run has --conv_dim=16 --seed=5; use another --workdir or the same flags')
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    train.train_and_evaluate(*main_config(*args, '--num_steps=10', '--conv_dim=16', '--seed=5'))
  assert (tmp_path / 'run' / 'flags.txt').read_text() == flags_before
  assert os.path.exists(tmp_path / 'run' / 'checkpoints' / '10')

  caplog.set_level('INFO')
  train.train_and_evaluate(*main_config(*args, '--num_steps=20', '--lr_g=1e-4'))
  assert 'Changed on resume: --num_steps=20 (was 10), --lr_g=0.0001 (was 0.0002)' in (
      caplog.text)
  history = (tmp_path / 'run' / 'flags.txt').read_text()
  assert history == flags_before + '# Resumed at step 10 with:\n--num_steps=20\n--lr_g=0.0001\n'
  flagfile = config_lib.read_flagfile(str(tmp_path / 'run' / 'flags.txt'))
  assert (flagfile['num_steps'], flagfile['lr_g'], flagfile['seed']) == (20, 1e-4, 0)
  # The checkpoint now holds the new rate: the same command again has nothing to train.
  caplog.clear()
  train.train_and_evaluate(*main_config(f'--flagfile={workdir}/flags.txt'))
  assert 'The run has reached --num_steps=20: nothing to train' in caplog.text
  assert (tmp_path / 'run' / 'flags.txt').read_text() == history
  message = ('--num_steps=5 is below the step this run has reached (20); pass --num_steps=20 '
             'or more to go on, or another --workdir')
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    train.train_and_evaluate(*main_config(*args, '--num_steps=5', '--lr_g=1e-4'))

  # A file the run cannot write is one line naming it.
  os.makedirs(tmp_path / 'run' / 'samples.npz')
  sampled = main_py(*args, '--mode=sample', '--num_samples=4')
  assert sampled.returncode == 1
  assert sampled.stderr.strip().splitlines()[-1] == (
      f'error: cannot write {workdir}/samples.npz: Is a directory')


def test_a_second_run_on_a_workdir_in_use_stops_before_touching_it(tmp_path, data_dir):
  lock = workdir_lib.Lock(str(tmp_path)).acquire()  # as a run in progress holds it
  try:
    result = main_py(*TINY, f'--data_dir={data_dir}', f'--workdir={tmp_path}', '--num_steps=5')
  finally:
    lock.release()
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: --workdir={tmp_path} is in use by another run (pid {os.getpid()} on '
      f'{socket.gethostname()}); wait for it to end, or use another --workdir')
  assert os.listdir(tmp_path) == ['run.lock']


def test_host_input_resumed_gives_the_device_input_run(tmp_path, data_dir):
  """Batch 256 of 1,024 images: epochs turn over every 4 steps, inside both halves. On one
  device, in a process of its own: the two inputs are two programs, which agree bit for bit
  under EXACT_XLA_FLAGS, not the suite's faster-compiling flags (tests/conftest.py)."""
  args = TINY + [f'--data_dir={data_dir}', '--batch_size=256', '--log_every=3',
                 '--tensorboard=false', '--num_devices=1']
  host, device = str(tmp_path / 'host'), str(tmp_path / 'device')
  runs = [main_config(*args, f'--workdir={host}', '--input=host', f'--num_steps={num_steps}')
          for num_steps in (6, 12)]
  runs.append(main_config(*args, f'--workdir={device}', '--num_steps=12'))  # auto: on device
  out = train_in_a_process(runs, xla_flags(1, EXACT_XLA_FLAGS))
  _, first, second, third = out.split('RUN ')
  assert 'Input: host' in first and 'Resuming at step 6' in second
  assert 'Input: the whole dataset on the devices' in third
  assert [r['step'] for r in metrics(host)] == [3, 6, 9, 12]
  for ours, theirs in zip(metrics(host), metrics(device), strict=True):
    for key in ('d_loss', 'g_loss', 'd_real', 'd_fake'):
      assert ours[key] == theirs[key], (ours['step'], key)


def test_steps_per_call_gives_the_one_step_run_at_full_optimisation(tmp_path, data_dir):
  """--steps_per_call=3 with logs every 5 steps and a resume at step 10 (calls end at those
  steps; the epoch of 16 batches turns over inside the call of steps 15-17) is the one-step
  run bit for bit, under XLA's default CPU optimisation and main.py's XLA flags, on 2 devices
  (where Adam amplifies any difference in the last bits). The three runs in one process of
  their own, whose XLA flags are those."""
  args = TINY + [f'--data_dir={data_dir}', '--num_steps=20', '--batch_size=64',
                 '--tensorboard=false', '--num_devices=2']
  one, three = str(tmp_path / 'one'), str(tmp_path / 'three')
  runs = [main_config(*args, f'--workdir={one}')] + [
      main_config(*args, f'--workdir={three}', '--steps_per_call=3', f'--num_steps={num_steps}')
      for num_steps in (10, 20)]
  train_in_a_process(runs, xla_flags(2, ''), main_py_flags=True)
  timing = ('images_per_sec', 'steps_per_sec')
  rows = [[{k: v for k, v in row.items() if k not in timing} for row in metrics(workdir)]
          for workdir in (one, three)]
  assert [row['step'] for row in rows[1]] == [5, 10, 15, 20] and rows[0] == rows[1]
  states = [read_checkpoint(os.path.join(workdir, 'checkpoints', '20'))
            for workdir in (one, three)]
  for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
    np.testing.assert_array_equal(a, b)


def test_each_loss_trains_logs_and_plots_its_own_numbers(tmp_path, caplog):
  """bce, lsgan and hinge runs: finite losses, each loss's own (every logged value differs
  from bce's), in metrics.jsonl and in the progress lines; losses.png plots them;
  images_per_sec is right. The bce run is main.py's process, whose console shows only our
  INFO lines while it renders the data too; the others run what main.py calls, in process."""
  data = str(tmp_path / 'data')
  runs = {}
  for loss in ('bce', 'lsgan', 'hinge'):
    workdir = str(tmp_path / loss)
    # The last run without TensorBoard's files.
    args = [*TINY, f'--data_dir={data}', f'--workdir={workdir}', '--num_steps=10',
            f'--loss={loss}', f'--tensorboard={str(loss != "hinge").lower()}']
    started = time.monotonic()
    if loss == 'bce':
      run = main_py(*args)
      wall = time.monotonic() - started
      assert run.returncode == 0, run.stderr[-2000:]
      assert 'train.py' in assert_only_our_info_lines(run.stdout)
      logged = [(t, message) for _, t, message in info_lines(run.stdout)]
    else:
      caplog.clear()
      with caplog.at_level('INFO'):
        train.train_and_evaluate(*main_config(*args, '--num_devices=1'))
      wall = time.monotonic() - started
      logged = [(record.created, record.getMessage()) for record in caplog.records]
    assert os.path.isdir(os.path.join(workdir, 'tensorboard')) == (loss != 'hinge')
    rows = metrics(workdir)
    assert [r['step'] for r in rows] == [5, 10]
    assert all(np.isfinite(v) for row in rows for v in row.values()), rows
    lines = {int(m[1]): (t, m[0]) for t, message in logged
             if (m := re.match(r'step (\d+)/10 \| (.*)', message))}
    for row in rows:
      assert f'd_loss {row["d_loss"]:.3f} g_loss {row["g_loss"]:.3f}' in lines[row['step']][1]
      # Exactly: multiplying by 16, a power of two, rounds nothing.
      assert row['images_per_sec'] == row['steps_per_sec'] * 16, row
    # The clock starts after the first step (which compiles): the 4 steps to step 5 took
    # less than the whole run did, and steps 6-10 less than the time between the two
    # progress lines (step 5's line is logged before the clock restarts).
    assert rows[0]['images_per_sec'] > 4 * 16 / wall, (rows, wall)
    between = (lines[10][0] - lines[5][0]) % 86400
    assert rows[1]['images_per_sec'] > 5 * 16 / between * (1 - 1e-3), (rows, between)
    png = os.path.join(workdir, 'losses.png')
    assert len(curve_pixels(png, D_COLOUR)) > 300 and len(curve_pixels(png, G_COLOUR)) > 300
    runs[loss] = rows, np.asarray(Image.open(png))
  bce, _ = runs['bce']
  for loss in ('lsgan', 'hinge'):
    rows, picture = runs[loss]
    for ours, theirs in zip(rows, bce):
      assert ours['d_loss'] != theirs['d_loss'] and ours['g_loss'] != theirs['g_loss'], loss
    assert not np.array_equal(picture, runs['bce'][1]), loss


def test_best_domain_fd_is_kept_and_another_run_starts_from_it(tmp_path, data_dir,
                                                               attribute_net_cache, monkeypatch,
                                                               caplog):
  """--best_metric=domain_fd (synthetic_faces' attribute network) keeps the state of the
  evaluated step with the lowest domain FD, and --init_checkpoint=WORKDIR/best_checkpoint
  starts a run from that step's weights, with fresh optimizers. In process, on one device."""
  monkeypatch.setenv('XDG_CACHE_HOME', attribute_net_cache)
  workdir = str(tmp_path / 'run')
  caplog.set_level('INFO')
  train.train_and_evaluate(*main_config(
      *TINY, f'--data_dir={data_dir}', '--checkpoint_every=5', '--keep_checkpoints=4',
      f'--workdir={workdir}', '--num_steps=20', '--eval_every=5', '--eval_samples=64',
      '--best_metric=domain_fd', '--tensorboard=false', '--num_devices=1'))
  rows = [row for row in metrics(workdir) if 'eval' in row]
  assert [row['step'] for row in rows] == [5, 10, 15, 20]
  values = [row['eval']['metrics']['domain_fd']['value'] for row in rows]
  assert len(set(values)) == 4  # the generator changed between evaluations
  best = rows[int(np.argmin(values))]['step']
  assert os.listdir(os.path.join(workdir, 'best_checkpoint')) == [str(best)]
  assert f'best domain_fd so far: {min(values):.4f} at step {best}' in caplog.text
  kept = read_checkpoint(os.path.join(workdir, 'best_checkpoint', str(best)))
  regular = read_checkpoint(os.path.join(workdir, 'checkpoints', str(best)))
  for a, b in zip(jax.tree.leaves(kept), jax.tree.leaves(regular), strict=True):
    np.testing.assert_array_equal(a, b)

  # What a run with --init_checkpoint=WORKDIR/best_checkpoint starts from (resume.py, as
  # main.py calls it), against the kept state.
  config = dataclasses.replace(  # the run's flags, and --init_checkpoint
      config_lib.Config(**config_lib.read_flagfile(workdir + '/flags.txt')),
      init_checkpoint=workdir + '/best_checkpoint')
  mesh = mesh_lib.make_mesh(1)
  state, origin = resume.restore_or_init(config, Checkpoints(str(tmp_path / 'new'),
                                                             config=config), mesh)
  kept = Checkpoints(workdir + '/best_checkpoint', config=config, read_only=True).restore(
      state_lib.abstract_state(config, mesh_lib.replicated(mesh)))
  same = {name: all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(kept, name)), strict=True))
      for name in ('g_params', 'g_stats', 'd_params', 'd_stats', 'ema_params', 'g_opt')}
  assert origin == (f'Starting at step 0 from the weights of step {best} in '
                    f'{workdir}/best_checkpoint')
  assert int(state.step) == 0 and int(state.g_opt[0].count) == 0
  assert same == dict(g_params=True, g_stats=True, d_params=True, d_stats=True,
                      ema_params=True, g_opt=False)


# The init checkpoint's error through main.py, end to end (the one line, and nothing written);
# the others in process, as main.py's run on 2 devices meets them.
def test_a_missing_init_checkpoint_is_one_line_and_writes_nothing(tmp_path, data_dir):
  result = main_py(*TINY, f'--data_dir={data_dir}', f'--workdir={tmp_path}',
                   '--init_checkpoint=/no/such/run', devices=2)
  assert result.returncode == 1, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      'error: --init_checkpoint=/no/such/run does not exist')
  assert 'Traceback' not in result.stderr
  assert set(os.listdir(tmp_path)) <= {'run.lock'}  # no empty checkpoints/, no flags.txt


@pytest.mark.parametrize('flags, message', [
    ('--num_devices=3', '--num_devices=3 but only 2 cpu devices are available'),
    # Found after the step compiles: on one device, whose compiled step other tests share.
    ('--eval_every=5 --eval_samples=2000 --num_devices=1',
     '--eval_samples=2000 but synthetic_faces/small has only 1024 training images'),
    ('--batch_size=7', '--batch_size=7 is not divisible by the number of devices (2)'),
    ('--dataset=imagenet', 'unknown --dataset=imagenet; available: synthetic_faces, '
     'synthetic_faces/small, celeba_small, tfds:NAME[:SPLIT], folder:PATH'),
    ('--dataset=folder:/no/such/dir', '/no/such/dir does not exist'),
])
def test_errors_found_as_the_run_starts_are_usage_errors(tmp_path, data_dir, flags, message):
  """What main.py calls raises the UsageError (which main.py prints as one line, above) before
  it writes anything; this process has 2 devices, as main.py's runs had."""
  config, workdir = main_config(*TINY, f'--data_dir={data_dir}', f'--workdir={tmp_path}',
                                *flags.split())
  validation.validate(config)  # main.py's check before anything compiles passes them
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    train.train_and_evaluate(config, workdir)
  assert set(os.listdir(tmp_path)) <= {'run.lock'}  # no empty checkpoints/, no flags.txt

"""The class metrics: the classifier learns real digits, is cached, and its metrics are ~0 for
real vs real and see a generator that never draws one class."""

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from facegan_jax import train
from facegan_jax import validation
from facegan_jax.config import Config
from facegan_jax.data import sources
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import classifier, evaluate
from tests.conftest import CLASS_NET_TRAIN, TINY, main_config


@pytest.fixture(scope='module', autouse=True)
def short_class_net_training():
  """The class network's training settings of the session's class_net_cache (its cache key
  holds them), for this module's tests."""
  with pytest.MonkeyPatch.context() as patch:
    for name, value in CLASS_NET_TRAIN.items():
      patch.setitem(classifier.TRAIN, name, value)
    yield


@pytest.fixture(scope='module')
def digits(data_dir, digits_dir, class_net_cache):
  """(config, images, labels, model, the training record, the record of loading it again)."""
  config = Config(dataset=f'folder:{digits_dir}', data_dir=data_dir, resolution=28, channels=1)
  images, (labels, names) = sources.load_images(config), sources.load_labels(config)
  with open(os.path.join(class_net_cache, 'training.json')) as f:
    record = json.load(f)
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('XDG_CACHE_HOME', class_net_cache)
    model, again = classifier.load_or_train(config, images, labels, names)
  return config, np.asarray(images), labels, model, record, again


def test_learns_the_digits_and_is_cached(digits):
  _, images, labels, model, record, again = digits
  assert images.shape == (1797, 28, 28, 1) and len(labels) == 1797
  assert record['classes'] == [str(d) for d in range(10)]
  assert not record['cached'] and again['cached'] and record['sha256'] == again['sha256']
  assert record['n_held_out'] == 180 and record['n_train'] == 1617
  assert record['held_out_accuracy'] > 0.9 > 4 * record['majority_baseline']
  # The reloaded network is the trained one: the same held-out accuracy, recomputed.
  _, held_out = classifier.split(len(images))
  _, predicted = classifier.read(model, classifier.to_input(images[held_out], 1))
  assert np.mean(predicted == labels[held_out]) == pytest.approx(record['held_out_accuracy'],
                                                                  abs=1e-4)


def _metrics(digits, real_rows, other_rows):
  _, images, _, model, _, quality = digits
  return classifier.ClassMetrics.prepare(model, quality, 1, images[real_rows],
                                         images[other_rows])


def test_real_vs_real_is_near_zero_and_a_missing_class_is_seen(digits):
  _, images, labels, *_ = digits
  order = np.random.default_rng(0).permutation(len(images))
  real, others = order[:800], order[800:1600]
  metrics = _metrics(digits, real, others)
  floor = metrics.floor
  assert floor['n_floor'] == 800 and floor['class_coverage'] == 10
  assert floor['class_tv'] < 0.08 and floor['class_fd'] > 0  # sampling noise of 800 vs 800
  same = metrics.values(images[real])
  assert same['class_tv'] == 0 and abs(same['class_fd']) < 1e-6
  # A generator that never draws a 3: the reals with every 3 replaced by a non-3 of theirs.
  no_threes = real[labels[real] != 3]
  fake = np.concatenate([no_threes, no_threes[:len(real) - len(no_threes)]])
  records = metrics(images[fake])
  assert records['class_coverage']['value'] == 9 and records['class_coverage']['floor'] == 10
  assert records['class_coverage']['of'] == 10
  assert records['class_tv']['frequencies']['3'] < 0.01
  assert records['class_tv']['value'] > max(0.08, floor['class_tv'])
  assert records['class_fd']['value'] > 2 * floor['class_fd']
  assert records['class_fd']['held_out_accuracy'] > 0.9
  assert records['class_fd']['weights_sha256'] == digits[4]['sha256']


def test_eval_mode_and_best_metric_on_a_labelled_folder(tmp_path, data_dir, digits_dir,
                                                        class_net_cache, monkeypatch, capsys):
  """Training with --eval_every and --best_metric=class_coverage, then --mode=eval: what
  main.py calls for each, in process on one device, with the session's class network."""
  monkeypatch.setenv('XDG_CACHE_HOME', class_net_cache)
  args = [f'--dataset=folder:{digits_dir}', f'--data_dir={data_dir}', '--model=mlp',
          '--resolution=28', '--channels=1', '--hidden_dim=16', '--z_dim=8', '--batch_size=16',
          '--log_every=10', '--sample_every=20', '--checkpoint_every=20', '--num_steps=20',
          '--eval_samples=200', f'--workdir={tmp_path}', '--num_devices=1']
  train.train_and_evaluate(*main_config(*args, '--eval_every=10',
                                        '--best_metric=class_coverage'))
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  evals = [row['eval'] for row in rows if 'eval' in row]
  assert [e['step'] for e in evals] == [10, 20]
  for record in evals:
    coverage = record['metrics']['class_coverage']
    assert coverage['of'] == 10 and 1 <= coverage['value'] <= 10 and coverage['floor'] == 10
    assert record['metrics']['class_fd']['floor'] < record['metrics']['class_fd']['value']
    assert record['metrics']['class_fd']['n_floor'] == 200
  best = max(evals, key=lambda e: (e['metrics']['class_coverage']['value'], -e['step']))
  assert os.listdir(tmp_path / 'best_checkpoint') == [str(best['step'])]
  capsys.readouterr()
  evaluate.evaluate(*main_config(*args, '--mode=eval'))
  table = capsys.readouterr().out
  assert 'classFD' in table and 'real-vs-real floor (200 other reals)' in table
  record = json.load(open(tmp_path / 'eval.json'))
  assert record['metrics']['class_tv']['floor'] == evals[-1]['metrics']['class_tv']['floor']
  assert record['dataset_version'].startswith('files-')


def test_class_metric_on_an_unlabelled_dataset_is_a_usage_error(tmp_path, data_dir):
  """Refused before anything trains (main.py prints it as one line: test_main.py): by the
  validation main.py runs first, and by the run itself."""
  config, workdir = main_config(*TINY, f'--data_dir={data_dir}', f'--workdir={tmp_path}',
                                '--num_steps=10', '--eval_every=10', '--eval_samples=64',
                                '--best_metric=class_fd')
  message = re.escape('--best_metric=class_fd needs a labelled dataset (a folder with class '
                      'subfolders, or a TFDS dataset with a label feature); '
                      'synthetic_faces/small has no labels')
  with pytest.raises(UsageError, match=f'^{message}$'):
    validation.validate(config)
  with pytest.raises(UsageError, match=f'^{message}$'):
    train.train_and_evaluate(config, workdir)
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_max_images_trains_and_measures_on_a_fixed_draw_with_a_held_out_floor(
    digits, class_net_cache, monkeypatch):
  """--max_images=100 of the 1,797 digits: the same 100 for training and for every run, drawn
  across the classes (the folder lists them class by class), and the metrics compare with all
  100 (fewer than --eval_samples) and their floor with 100 digits the run never saw."""
  config, images, labels = digits[:3]
  small = dataclasses.replace(config, max_images=100, eval_samples=200)
  trained_on = sources.training_indices(small, len(images))
  np.testing.assert_array_equal(sources.load_training_images(small), images[trained_on])
  np.testing.assert_array_equal(trained_on, sources.training_indices(small, len(images)))
  assert len(set(trained_on)) == 100 and len(set(labels[trained_on])) == 10
  monkeypatch.setenv('XDG_CACHE_HOME', class_net_cache)
  evaluator = evaluate.Evaluator(small)
  assert evaluator.provenance['n_real'] == evaluator.provenance['train_images'] == 100
  np.testing.assert_array_equal(evaluator.real, images[trained_on])
  # G drawing the training digits themselves (a copy) scores 0, under the floor.
  record = evaluator(7, lambda z: images[trained_on][:len(z)])
  fd = record['metrics']['class_fd']
  assert fd['n_floor'] == 100 and fd['value'] < 1e-6 < fd['floor']
  with pytest.raises(UsageError, match=r'^--max_images=1798 but folder:.* has only 1797 '
                                       'training images$'):
    sources.load_training_images(dataclasses.replace(small, max_images=1798))

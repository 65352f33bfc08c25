"""Class-conditional training (--condition): the layers against direct computations, the step
on one and two devices and across a resume, the metrics against NumPy, the errors, and what
main.py calls for each mode on real digits."""

import collections
import dataclasses
import functools
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from facegan_jax import explore, mesh as mesh_lib, resume, sample, train
from facegan_jax import state as state_lib, step as step_lib
from facegan_jax import validation
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.config import Config
from facegan_jax.data import folder, pipeline, sources, synthetic_faces
from facegan_jax.data import images as images_lib
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import classifier, conditional, evaluate
from facegan_jax.models import dcgan
from facegan_jax.models.batchnorm import BatchNorm
from tests.conftest import CLASS_NET_TRAIN, main_config
from tests.test_step import CONDITIONAL, random_images, start, tiny_config


@pytest.fixture(scope='module', autouse=True)
def short_class_net_training():
  """The class network's training settings of the session's class_net_cache (its cache key
  holds them); CAS trains its classifiers with them too."""
  with pytest.MonkeyPatch.context() as patch:
    for name, value in CLASS_NET_TRAIN.items():
      patch.setitem(classifier.TRAIN, name, value)
    yield


def test_conditional_batchnorm_scales_and_shifts_by_each_examples_class():
  rng = np.random.default_rng(0)
  bn = BatchNorm(4, num_classes=3, rngs=nnx.Rngs(0))
  scale, bias = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  bn.scale[...], bn.bias[...] = jnp.asarray(scale), jnp.asarray(bias)
  x = rng.normal(size=(6, 2, 2, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 2, 1, 0])
  per_class = lambda table: table[labels][:, None, None, :]
  normalised = (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-5)
  np.testing.assert_allclose(bn(jnp.asarray(x), train=True, labels=labels),
                             normalised * per_class(scale) + per_class(bias), atol=1e-5)
  mean, var = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
  bn.mean[...], bn.var[...] = jnp.asarray(mean), jnp.asarray(var)
  np.testing.assert_allclose(bn(jnp.asarray(x), train=False, labels=labels),
                             (x - mean) / np.sqrt(var + 1e-5) * per_class(scale)
                             + per_class(bias), atol=1e-5)


def test_the_projection_discriminator_adds_the_classs_inner_product_with_its_features():
  """D(x, k) = b + w·φ(x) + e_k·φ(x): with e_k = c_k w, D(x, k) - b = (1 + c_k) w·φ(x)."""
  d = dcgan.Discriminator(resolution=16, conv_dim=4, num_classes=3, rngs=nnx.Rngs(0))
  w, b = d.logit.kernel[...][:, 0], d.logit.bias[...][0]
  c = jnp.array([0.0, 1.0, -2.5])
  d.projection.kernel[...] = c[:, None] * w[None]
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  logits = [d(x, train=False, labels=jnp.full(2, k)) - b for k in range(3)]
  for k in range(3):
    np.testing.assert_allclose(logits[k], (1 + c[k]) * logits[0], rtol=1e-4, atol=1e-5)


def test_a_conditional_run_resumed_is_the_straight_run_on_either_input(tmp_path):
  """On 2 devices with 2 D updates a step and spectral norm in D, batches (images and classes)
  read on the host: 2 steps, a real checkpoint, main.py's restore of it, 2 more steps, is bit
  for bit the straight 4-step run (parameters, BatchNorm statistics, spectral-norm vectors,
  both optimizers, the step); and that run is the one drawing its batches on the devices (to
  float rounding: another program, whose sums XLA may order otherwise under the suite's
  flags)."""
  config = tiny_config(num_devices=2, d_steps=2, spectral_norm='d', **CONDITIONAL)
  images, labels = random_images(40), np.arange(40, dtype=np.int32) % 3
  mesh = mesh_lib.make_mesh(2)

  def train_steps(config, state, first, last):
    inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), first, labels)
    step_fn = step_lib.make_train_fn(config, mesh, inputs.on_host)
    for step in range(first, last):
      state, _ = step_fn(state, inputs(step), 1)
    return state

  on_device = jax.device_get(train_steps(config, start(config)[1], 0, 4))
  on_host = dataclasses.replace(config, input='host', num_steps=4)
  straight = jax.device_get(train_steps(on_host, start(on_host)[1], 0, 4))
  saving = Checkpoints(tmp_path, config=on_host)
  saving.save(train_steps(on_host, start(on_host)[1], 0, 2), 2)
  saving.wait()
  saving.close()
  restored, origin = resume.restore_or_init(on_host, Checkpoints(tmp_path, config=on_host),
                                            mesh)
  assert origin == 'Resuming at step 2'
  resumed = jax.device_get(train_steps(on_host, restored, 2, 4))
  assert int(resumed.step) == 4
  for a, b, c in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed),
                     jax.tree.leaves(on_device), strict=True):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


def _frechet(a, b):
  """The Fréchet distance of two feature sets, by the textbook formula (scipy's sqrtm)."""
  import scipy.linalg  # noqa: PLC0415
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(s1 @ s2).real
  return np.square(a.mean(0) - b.mean(0)).sum() + np.trace(s1 + s2 - 2 * root)


def test_class_accuracy_and_intra_fd_are_their_direct_computations():
  """With a reader whose features and classes are fixed per image, the metrics are NumPy's:
  the share read as asked, and the mean over the classes of their Fréchet distances (a class
  with a single fake is left out)."""
  rng = np.random.default_rng(0)
  table = {}  # image id (its first pixel) -> (features, class read)

  def images_of(features, classes):
    ids = np.arange(len(table), len(table) + len(features))
    table.update({int(i): (f, c) for i, f, c in zip(ids, features, classes)})
    return ids.reshape(-1, 1, 1, 1)

  def read(images):
    rows = [table[int(i)] for i in images[:, 0, 0, 0]]
    return np.stack([f for f, _ in rows]), np.array([c for _, c in rows])

  asked = np.array([0] * 12 + [1] * 12 + [2] * 1)
  real_features = rng.normal(size=(25, 3))
  others = images_of(rng.normal(size=(25, 3)), asked)
  metrics = conditional.ConditionalMetrics(
      read, dict(network='test'), ['a', 'b', 'c'], 1, asked, real_features, others,
      asked, dict(class_accuracy=0.9, intra_fd=None, cas=None, n_bound=25))
  fake_features = rng.normal(size=(25, 3)) + np.array([1.0, 0, 0])
  read_as = np.where(rng.random(25) < 0.7, asked, (asked + 1) % 3)
  fake = images_of(fake_features, read_as)
  values = dataclasses.replace(metrics, test=others[:0])(fake)  # no CAS here: below
  assert values['class_accuracy']['value'] == pytest.approx((read_as == asked).mean())
  assert values['class_accuracy']['ceiling'] == 0.9
  expected = [_frechet(real_features[asked == k], fake_features[asked == k]) for k in (0, 1)]
  assert values['intra_fd']['value'] == pytest.approx(np.mean(expected), rel=1e-6)
  assert list(values['intra_fd']['per_class']) == ['a', 'b']


def test_cas_is_high_for_fakes_of_their_classes_and_near_0_for_fakes_of_others(monkeypatch):
  """CAS trains classifier.py's network on the fakes and the classes they were drawn for and
  tests it on real images: fakes whose class shows (brightness bands) give ~1; the same fakes
  drawn for the next class each give ~0 (with 20 epochs of batches of 16 for these 60 images:
  the suite's 4 epochs leave a classifier near its random start)."""
  monkeypatch.setitem(classifier.TRAIN, 'epochs_at_most', 20)
  monkeypatch.setitem(classifier.TRAIN, 'batch_size', 16)
  rng = np.random.default_rng(0)

  def banded(classes):
    levels = np.array([40, 128, 215])[classes]
    noise = rng.normal(0, 12, (len(classes), 16, 16, 1))
    return np.clip(levels[:, None, None, None] + noise, 0, 255).astype(np.uint8)

  classes, test_classes = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
  fakes, reals = banded(classes), banded(test_classes)
  score = lambda labels: conditional.classification_accuracy_score(
      fakes, labels, reals, test_classes, 3, 1)
  assert score(classes) > 0.95
  assert score((classes + 1) % 3) < 0.05


@pytest.mark.parametrize('overrides, message', [
    (dict(condition='beard'), '--condition=beard is not one of label, hair_style, glasses (or '
                              'empty: unconditional)'),
    (dict(condition='label'), '--condition=label needs a labelled dataset (a folder with class '
                              'subfolders, or a TFDS dataset with a label feature); '
                              'synthetic_faces has none (its attributes: '
                              '--condition=hair_style|glasses)'),
    (dict(condition='glasses', dataset='tfds:mnist'),
     '--condition=glasses is an attribute of synthetic_faces, not of --dataset=tfds:mnist; '
     'use --condition=label for a labelled dataset'),
    (dict(sample_class=2), '--sample_class=2 needs --condition'),
    (dict(condition='label', dataset='folder:x', resolution=8),
     "--condition=label at --resolution=8: dcgan's G has no BatchNorm to take the class; pass "
     '--g_first_bn'),
    (dict(condition='glasses', num_classes=3, sample_class=3),
     '--sample_class=3: must be -1 (every class) or in [0, 3) (--condition=glasses)'),
    (dict(best_metric='cas', eval_every=10), '--best_metric=cas measures a class-conditional '
                                              'G: needs --condition'),
])
def test_conditional_settings_are_checked_in_one_line(overrides, message):
  with pytest.raises(UsageError, match=f'^{re.escape(message)}$'):
    validation.validate(Config(**overrides))


def test_an_unlabelled_folder_cannot_be_conditioned(tmp_path):
  folder = tmp_path / 'faces'
  folder.mkdir()
  for i, image in enumerate(random_images(3)):
    Image.fromarray(image).save(folder / f'{i}.png')
  config = Config(dataset=f'folder:{folder}', data_dir=str(tmp_path / 'data'), condition='label')
  with pytest.raises(UsageError, match=re.escape(
      f'--condition=label: folder:{folder} has no class labels (a folder needs its images in '
      'two or more class subfolders, a TFDS dataset a label feature)')):
    sources.with_classes(config)


def test_a_tfds_name_tfds_does_not_have_is_a_one_line_error(tmp_path):
  config = Config(dataset='tfds:no_such_set', data_dir=str(tmp_path), condition='label')
  with pytest.raises(UsageError, match="^--dataset=tfds:no_such_set: TFDS has no dataset "
                                       "'no_such_set'$"):
    sources.with_classes(config)


def test_synthetic_faces_attributes_are_classes(data_dir):
  config = Config(dataset='synthetic_faces/small', data_dir=data_dir, resolution=16,
                  condition='glasses')
  assert sources.with_classes(config).num_classes == 3
  assert sources.class_names(config) == list(synthetic_faces.GLASSES)
  column = synthetic_faces.ATTRIBUTES.index('glasses')
  np.testing.assert_array_equal(sources.load_classes(config),
                                sources.load_attributes(config)[:, column].astype(np.int32))


def test_conditional_digits_train_evaluate_and_sample_by_class(tmp_path, data_dir, digits_dir,
                                                               class_net_cache, monkeypatch):
  """What main.py calls, in process on one device: training with --condition=label,
  --eval_every and --best_metric=class_accuracy, whose conditional metrics come with their
  bounds; the grid a row per class; --mode=sample of one class; --mode=explore."""
  monkeypatch.setenv('XDG_CACHE_HOME', class_net_cache)
  args = [f'--dataset=folder:{digits_dir}', f'--data_dir={data_dir}', '--model=mlp',
          '--resolution=28', '--channels=1', '--hidden_dim=16', '--z_dim=8', '--batch_size=16',
          '--log_every=10', '--sample_every=20', '--checkpoint_every=20', '--num_steps=20',
          '--eval_samples=200', f'--workdir={tmp_path}', '--num_devices=1',
          '--condition=label']
  config, workdir = main_config(*args, '--eval_every=20', '--best_metric=class_accuracy')
  # The folder is listed, and its files stat'ed for its content key, once in the whole run
  # (its images, labels, classes, provenance and evaluation asked 10 times before).
  calls = collections.Counter()
  for module, name in ((images_lib, '_list_folder'), (folder, '_content_key')):
    monkeypatch.setattr(module, name, functools.partial(
        lambda f, name, *a: calls.update([name]) or f(*a), getattr(module, name), name))
  train.train_and_evaluate(config, workdir)
  assert calls == {'_list_folder': 1, '_content_key': 1}
  monkeypatch.undo()
  monkeypatch.setenv('XDG_CACHE_HOME', class_net_cache)
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  (record,) = [row['eval'] for row in rows if 'eval' in row]
  accuracy, intra, cas = (record['metrics'][k] for k in ('class_accuracy', 'intra_fd', 'cas'))
  assert 0 <= accuracy['value'] <= 1 and accuracy['ceiling'] > 0.9
  assert len(accuracy['per_class']) == 10
  assert intra['floor'] < intra['value'] and cas['ceiling'] > 0.5 and cas['n_test'] == 200
  assert (tmp_path / 'best_checkpoint' / '20').is_dir()
  grid = Image.open(tmp_path / 'samples' / 'step_0000020.png')
  assert grid.size == (2 * (8 * 30 + 2), 2 * (10 * 30 + 2))  # 10 rows of 8, 2 px apart, x2
  config = sources.with_classes(main_config(*args, '--mode=sample', '--sample_class=3',
                                            '--num_samples=16')[0])
  images = sample.sample(config, workdir)
  saved = np.load(tmp_path / 'samples.npz')
  np.testing.assert_array_equal(saved['classes'], np.full(16, 3))
  np.testing.assert_array_equal(saved['images'], images)
  unconditional = main_config(*args[:-1], '--mode=sample')[0]
  with pytest.raises(UsageError, match='^checkpoint 20 in .* was trained with --condition=label '
                                       '--num_classes=10, this run has --condition= '
                                       '--num_classes=0; use another --workdir or the same '
                                       'flags$'):
    sample.sample(unconditional, workdir)
  config = sources.with_classes(main_config(*args, '--mode=explore', '--interpolate=4')[0])
  summary = explore.explore(config, workdir)
  assert summary['classes'] == dict(interpolation='row r: class r mod K', arithmetic=0)
  rows = np.asarray(Image.open(tmp_path / 'explore' / 'interpolation.png'))
  assert rows.shape[:2] == (2 * (8 * 30 + 2), 2 * (4 * 30 + 2))
  # --mode=eval runs the same evaluation (tests/test_classifier.py); its table shows them.
  assert 'class acc' in evaluate.table(record) and 'CAS' in evaluate.table(record)

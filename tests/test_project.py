"""--mode=project: a generator's own images project back to them; the outputs, the baselines
against a direct computation, and one-line errors for bad inputs."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from facegan_jax import config as config_lib, project, state as state_lib
from facegan_jax import validation
from facegan_jax.data import pipeline
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import face_attributes
from facegan_jax.models.batchnorm import BatchNorm
from facegan_jax.sample import load_latest
from tests.conftest import TINY, copy_run, main_config


def _generator(config):
  """A freshly initialised generator of `config`, its weights 5x DCGAN's N(0, 0.02) draws:
  at their own scale every z draws nearly the same image (pixels 3e-4 apart), at 5x they
  differ (0.16 apart) without saturating tanh."""
  state = state_lib.init_state(config)
  return nnx.merge(state.g_graph, jax.tree.map(lambda p: 5 * p, state.g_params), state.g_stats)


def test_a_generators_own_images_project_back_to_them():
  config = config_lib.Config(resolution=16, conv_dim=8, z_dim=8, project_steps=200,
                             project_lr=0.1, project_starts=4, project_perceptual=0.0)
  g = _generator(config)
  z_true = jax.random.normal(jax.random.PRNGKey(7), (6, config.z_dim))
  targets = pipeline.to_uint8(g(z_true, train=False))
  result = project.optimise(config, g, targets)
  assert result['z'].shape == (6, 8) and result['images'].shape == (6, 16, 16, 3)
  # The nearest start is the first frame; the optimisation takes the error far below it and
  # below what the targets' mean image scores (the generator-free baseline).
  first = np.mean((result['frames'][0] / 127.5 - 1.0 - targets / 127.5 + 1.0)**2, axis=(1, 2, 3))
  _, mean = project.baselines(targets, targets)
  assert np.all(result['pixel'] < 0.2 * first), (result['pixel'], first)
  assert np.all(result['pixel'] < 0.25 * mean), (result['pixel'], mean)
  assert result['pixel'].mean() < 0.1 * mean.mean(), (result['pixel'], mean)
  assert len(result['frames']) == project.TIMELAPSE_FRAMES
  # The images returned are the generator's for the latents returned.
  np.testing.assert_allclose(result['images'], g(result['z'], train=False), atol=1e-5)


def test_a_conditional_generators_images_project_back_to_their_classes_and_latents():
  """Under --condition, every start is tried in every class: a class-conditional G's own
  images come back in the classes they were drawn in (each class's tables made 3x apart, so
  classes differ as much as latents do), and near the images; a class given is kept."""
  config = config_lib.Config(resolution=16, conv_dim=8, z_dim=8, project_steps=100,
                             project_lr=0.1, project_starts=4, project_perceptual=0.0,
                             g_first_bn=True, condition='label', num_classes=3,
                             dataset='folder:x')
  g = _generator(config)
  for i, (_, bn) in enumerate(nnx.iter_graph(g)):
    if isinstance(bn, BatchNorm):  # its per-class scales: 5 (1 + 0.6 N(0, 1))
      bn.scale[...] = 5 + 3 * jax.random.normal(jax.random.key(i), bn.scale.shape)
  z_true = jax.random.normal(jax.random.PRNGKey(7), (6, config.z_dim))
  classes = jnp.array([0, 1, 2, 2, 1, 0])
  targets = pipeline.to_uint8(g(z_true, train=False, labels=classes))
  found = project.optimise(config, g, targets)
  np.testing.assert_array_equal(found['classes'], classes)
  _, mean = project.baselines(targets, targets)
  assert found['pixel'].mean() < 0.1 * mean.mean(), (found['pixel'], mean)
  np.testing.assert_allclose(found['images'], g(found['z'], train=False, labels=classes),
                             atol=1e-5)
  given = project.optimise(dataclasses.replace(config, project_steps=2), g, targets,
                           classes=np.full(6, 1))
  np.testing.assert_array_equal(given['classes'], np.full(6, 1))


def test_baselines_are_the_nearest_and_the_mean_images_squared_errors():
  rng = np.random.default_rng(0)
  targets = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
  training = rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
  nearest, mean = project.baselines(targets, training, batch=4)  # three batches, one partial
  t = targets.reshape(3, -1) / 127.5 - 1
  x = training.reshape(10, -1) / 127.5 - 1
  errors = ((t[:, None] - x[None])**2).mean(axis=-1)
  np.testing.assert_allclose(nearest, errors.min(axis=1), rtol=1e-9)
  np.testing.assert_allclose(mean, ((t - x.mean(axis=0))**2).mean(axis=-1), rtol=1e-9)
  # A target that is a training image has its nearest at 0.
  assert project.baselines(training[:1], training)[0][0] == pytest.approx(0, abs=1e-12)


def test_project_mode_writes_pairs_timelapse_latents_and_distances(tmp_path, data_dir, tiny_run,
                                                                   attribute_net_cache,
                                                                   monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', attribute_net_cache)  # the session's attribute net
  workdir = copy_run(tiny_run[0], str(tmp_path / 'run'))  # TINY, 10 steps
  folder = tmp_path / 'faces'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f'{i}.png')
  config, _ = main_config(*TINY, f'--data_dir={data_dir}', f'--workdir={workdir}',
                          '--mode=project', f'--project_images={folder}', '--project_steps=20',
                          '--project_starts=2', '--project_perceptual=0', '--num_devices=1')
  record = project.project(config, workdir)
  out = os.path.join(workdir, 'project')
  with open(os.path.join(out, 'project.json')) as f:
    assert json.load(f) == record
  assert record['count'] == 3 and record['targets'] == str(folder) and record['step'] == 10
  assert record['perceptual_network'] is None and record['perceptual_weight'] == 0
  saved = np.load(os.path.join(out, 'latents.npz'))
  assert saved['z'].shape == (3, 8) and saved['targets'].shape == (3, 16, 16, 3)
  # Each reconstruction is the sampling generator's image of its saved latent, and its
  # recorded error is the one between the two images saved.
  state, generate = load_latest(config, workdir)
  np.testing.assert_array_equal(saved['reconstructions'], generate(saved['z']))
  errors = ((saved['reconstructions'] / 127.5 - saved['targets'] / 127.5)**2).mean(axis=(1, 2, 3))
  np.testing.assert_allclose(record['pixel_mse'], errors, atol=2e-2)
  # The attribute network's read-out: targets against reconstructions, as read directly.
  model, _ = face_attributes.load_or_train(config)
  _, continuous_t, classes_t = face_attributes.read_images(model, saved['targets'], 3)
  _, continuous_r, classes_r = face_attributes.read_images(model, saved['reconstructions'], 3)
  assert record['readout'] == dict(
      network='attribute net',
      same_class={name: pytest.approx(np.mean(np.asarray(a) == np.asarray(b)))
                  for name, a, b in zip(face_attributes.CATEGORICAL, classes_t, classes_r)},
      continuous_mse=pytest.approx(np.mean((np.asarray(continuous_t)
                                            - np.asarray(continuous_r))**2), rel=1e-5))
  for name in ('nearest_training_mse', 'mean_image_mse'):
    assert len(record[name]) == 3 and all(v > 0 for v in record[name])
  with Image.open(os.path.join(out, 'pairs.png')) as pairs:  # 3 pairs in a row, 2x
    assert pairs.size == (2 * (6 * 18 + 2), 2 * (18 + 2))
  with Image.open(os.path.join(out, 'timelapse.gif')) as timelapse:
    assert timelapse.n_frames > 1  # 16 points of 20 steps (PIL merges frames that repeat)


def test_bad_projection_inputs_are_one_line_errors(tmp_path, data_dir, tiny_run):
  workdir = copy_run(tiny_run[0], str(tmp_path / 'run'))
  args = [*TINY, f'--data_dir={data_dir}', f'--workdir={workdir}', '--mode=project',
          '--num_devices=1']
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(UsageError, match=f'^--project_images={missing}: no such folder or file$'):
    project.project(main_config(*args, f'--project_images={missing}')[0], workdir)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(UsageError, match='empty'):
    project.project(main_config(*args, f'--project_images={empty}')[0], workdir)
  with pytest.raises(UsageError, match='^no checkpoints in '):
    project.project(main_config(*args)[0], str(tmp_path / 'untrained'))
  with pytest.raises(UsageError, match=r'^folder:\S+ has no --project_split=test: pass the '
                                       'images to project with --project_images$'):
    project.load_targets(config_lib.Config(dataset=f'folder:{tmp_path}'))
  for flag, message in (('--project_count=0', '--project_count=0: must be at least 1'),
                        ('--project_lr=-1', '--project_lr=-1.0: must be finite and at least 0'),
                        ('--project_perceptual=inf',
                         '--project_perceptual=inf: must be finite and at least 0')):
    with pytest.raises(UsageError, match='^' + message.replace('.', r'\.') + '$'):
      validation.validate(main_config(*args, flag)[0])


def test_a_labelled_datasets_class_net_reads_and_guides_projections(data_dir, digits_dir,
                                                                     class_net_cache,
                                                                     monkeypatch):
  """On a labelled folder (scikit-learn's digits): the class network's read-out, against a
  direct reading, and its features as a differentiable perceptual distance."""
  from facegan_jax.data import sources  # noqa: PLC0415
  from facegan_jax.evaluation import classifier  # noqa: PLC0415
  from tests.conftest import CLASS_NET_TRAIN  # noqa: PLC0415
  monkeypatch.setenv('XDG_CACHE_HOME', class_net_cache)
  for name, value in CLASS_NET_TRAIN.items():  # the session's network (its cache key)
    monkeypatch.setitem(classifier.TRAIN, name, value)
  config = config_lib.Config(dataset=f'folder:{digits_dir}', data_dir=data_dir, resolution=28,
                             channels=1)
  images, (labels, _) = np.asarray(sources.load_images(config)), sources.load_labels(config)
  targets = images[:12]
  model, _ = classifier.load_or_train(config, images, labels, sources.load_labels(config)[1])
  network = project.dataset_network(config)
  assert project.read_out(network, targets, targets, 1) == dict(network='class net',
                                                                same_class=1)
  others = images[100:112]
  read = [classifier.read(model, classifier.to_input(x, 1))[1] for x in (targets, others)]
  assert project.read_out(network, targets, others, 1)['same_class'] == pytest.approx(
      np.mean(read[0] == read[1]))
  name, module, read = project.feature_network(config, network)
  features = functools.partial(read, module)
  x = pipeline.to_float(jnp.asarray(targets[:2]))
  # The features of the 28x28 digits resized on the devices, bicubic as the metrics' host
  # resize (data/preprocess.py), but for its rounding to uint8 and the edges.
  read_features = classifier.read(model, classifier.to_input(targets[:2], 1))[0]
  np.testing.assert_allclose(features(x), read_features, atol=0.05 * np.abs(read_features).max())
  grads = jax.grad(lambda x: jnp.sum(features(x)**2))(x)
  assert name == 'class net' and grads.shape == x.shape and np.abs(grads).max() > 0


def test_inception_weights_give_the_perceptual_distance_inceptions_features(tmp_path):
  """With --inception_weights (random weights here: tests/test_inception.py), the perceptual
  features are the FID's pool features of the images (resized on the devices as fid's
  'pytorch_fid' resize does), grey images as three equal channels, and differentiable in
  them."""
  from facegan_jax.evaluation import fid  # noqa: PLC0415
  from tests.test_inception import random_inception_npz  # noqa: PLC0415
  weights = random_inception_npz(str(tmp_path / 'inception.npz'))
  config = config_lib.Config(resolution=16, channels=1, inception_weights=weights)
  name, module, read = project.feature_network(config, network=None)
  targets = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
  x = pipeline.to_float(jnp.asarray(targets))
  expected = fid.features(fid.load_network(weights)[0], targets, 'pytorch_fid')
  got = jax.jit(read)(module, x)  # the weights an argument, as optimise passes them
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
  # Differentiable: the input Inception reads is a linear, differentiable map of the images
  # (no uint8 on the way), whose gradient reaches every pixel.
  grads = jax.grad(lambda x: jnp.sum(project._as_inception_input(x)**2))(x)
  assert name == 'inception' and grads.shape == x.shape and np.all(np.abs(grads) > 0)
  assert project.feature_network(dataclasses.replace(config, project_perceptual=0), None) is None
